"""A labelled set of tracking requests: each rule firing, and not firing, with its reasons."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from crawlerdetect import CrawlerDetect

from tracking_http.classify import DATA_DIR, Classifier, RequestFacts, load_security_agents
from tracking_http.networks import NetworkTable, parse_address, read_labelled_networks
from tracking_http.privacy import anonymize_ip

DELIVERED = 1_700_000_000.0
LATER = DELIVERED + 600  # ten minutes after delivery: a person's pace
READER_IP = "203.0.113.7"
OFFICE_NET = "192.0.2.0/24"  # ignore_networks in these tests
SCANNER_NET = "198.51.100.0/24"  # configured scanner range
APPLE_IP = "17.58.101.9"
# Addresses inside the shipped snapshots (tracking_http/data/*.txt, see SOURCES.md there).
RELAY_IP = "172.224.226.17"  # iCloud Private Relay egress (Apple's egress-ip-ranges.csv)
RELAY_IP6 = "2a02:26f7:b003:4000::5e"
EOP_IP = "40.107.22.15"  # Exchange Online Protection, 40.107.0.0/16 (Microsoft 365 endpoints)
GOOGLEBOT_IP = "66.249.66.1"  # googlebot.json

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15"
)
OUTLOOK_DESKTOP = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.15225; Pro)"
OUTLOOK_MSOFFICE = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; "
    ".NET4.0E; Microsoft Outlook 16.0.4954; ms-office; MSOffice 16)"
)
OUTLOOK_IOS = "Outlook-iOS/723.4027091.prod.iphone (4.62.0)"
MAC_OUTLOOK = "MacOutlook/16.78.23102801 (Intelx64 Mac OS X 14.1 (Build 23B74))"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3.1"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
IOS_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
APPLE_MAIL_NATIVE = "Mail/3731.700.6 CFNetwork/1474 Darwin/23.0.0"
YAHOO_MOBILE = "YahooMobileMail/1.0 (Android Mail; 6.39.2) (hammerhead;LGE;Nexus 5;6.0/MRA58N)"
ANDROID_WEBVIEW = (
    "Mozilla/5.0 (Linux; Android 13; SM-S911B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/119.0.6045.163 Mobile Safari/537.36"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
BARRACUDA = CHROME + " Barracuda Sentinel (EE)"
MIMECAST = "Mozilla/5.0 (compatible; Mimecast URL Protect)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/119.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
OFFICE_DISCOVERY = "Microsoft Office Existence Discovery"
EDGE = CHROME + " Edg/120.0.2210.91"
MICROSOFT_PREVIEW = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/51.0.2704.79 Safari/537.36 Edge/14.14393 MicrosoftPreview/2.0 "
    "+https://aka.ms/MicrosoftPreview"
)
YAHOO_PREVIEW = (
    "Mozilla/5.0 (compatible; Yahoo Link Preview; "
    "https://help.yahoo.com/kb/mail/yahoo-link-preview-SLN23615.html)"
)
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
TEAMS = (
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 "
    "skype-url-preview@microsoft.com"
)
DISCORD = "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"


def req(**changes: Any) -> RequestFacts:
    """A person clicking in Chrome ten minutes after delivery, changed by `changes`."""
    base = RequestFacts(
        kind="click",
        method="GET",
        ip=READER_IP,
        user_agent=CHROME,
        at=LATER,
        delivered_at=DELIVERED,
    )
    return base._replace(**changes)


def opened(**changes: Any) -> RequestFacts:
    return req(kind="open", **changes)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(
        bot_click_window=3.0,
        ignore_networks=[ipaddress.ip_network(OFFICE_NET)],
        scanner_networks=[ipaddress.ip_network(SCANNER_NET)],
    )


LABELLED: list[tuple[str, RequestFacts, str, tuple[str, ...]]] = [
    # --- human: browsers and real mail clients (crawler lists name several of these)
    ("chrome click", req(), "human", ()),
    ("safari click", req(user_agent=SAFARI), "human", ()),
    ("chrome open", opened(), "human", ()),
    (
        "outlook desktop open",
        opened(user_agent=OUTLOOK_DESKTOP),
        "human",
        ("ua:mail-client:Outlook",),
    ),
    (
        "outlook ms-office click",
        req(user_agent=OUTLOOK_MSOFFICE),
        "human",
        ("ua:mail-client:Outlook",),
    ),
    ("outlook ios open", opened(user_agent=OUTLOOK_IOS), "human", ("ua:mail-client:Outlook",)),
    ("mac outlook open", opened(user_agent=MAC_OUTLOOK), "human", ("ua:mail-client:Outlook",)),
    ("thunderbird open", opened(user_agent=THUNDERBIRD), "human", ("ua:mail-client:Thunderbird",)),
    ("apple mail open", opened(user_agent=APPLE_MAIL), "human", ("ua:mail-client:AppleMail",)),
    ("ios mail open", opened(user_agent=IOS_MAIL), "human", ("ua:mail-client:AppleMail",)),
    (
        "apple mail native",
        opened(user_agent=APPLE_MAIL_NATIVE),
        "human",
        ("ua:mail-client:AppleMail",),
    ),
    ("yahoo mobile open", opened(user_agent=YAHOO_MOBILE), "human", ("ua:mail-client:YahooMail",)),
    ("android webview open", opened(user_agent=ANDROID_WEBVIEW), "human", ()),
    ("click just past window", req(at=DELIVERED + 3.0), "human", ()),
    ("click, delivery unknown", req(at=DELIVERED + 0.1, delivered_at=None), "human", ()),
    ("open at 2 s after delivery", opened(at=DELIVERED + 2.0), "human", ()),
    (
        "apple mail opening at once",
        opened(user_agent=APPLE_MAIL, at=DELIVERED + 0.5),
        "human",
        ("ua:mail-client:AppleMail",),
    ),
    ("other click long ago", req(recent_clicks=(LATER - 30,)), "human", ()),
    (
        "sender ip after window",
        req(ip="203.0.113.50", sender_ip="203.0.113.50", submitted_at=LATER - 301),
        "human",
        (),
    ),
    (
        "sender ip, other client",
        req(sender_ip="203.0.113.50", submitted_at=LATER - 10),
        "human",
        (),
    ),
    ("not an address", req(ip="unknown"), "human", ()),
    # --- self
    ("ignore network", req(ip="192.0.2.44"), "self", ("self:ignore-network",)),
    ("ignore network v4-mapped", req(ip="::ffff:192.0.2.44"), "self", ("self:ignore-network",)),
    ("admin cookie", opened(has_admin_cookie=True), "self", ("self:admin-cookie",)),
    (
        "sender ip in window",
        req(ip="203.0.113.50", sender_ip="203.0.113.50", submitted_at=LATER - 299),
        "self",
        ("self:sender-ip",),
    ),
    (
        "self beats bot",
        req(ip="192.0.2.1", user_agent="curl/8.4.0", at=DELIVERED + 1),
        "self",
        ("self:ignore-network", "ua:crawler", "ua:headless", "click:too-fast"),
    ),
    # --- honeypot
    ("honeypot link", req(honeypot=True), "bot", ("honeypot",)),
    ("client hit honeypot before", req(honeypot_hit_by_client=True), "bot", ("honeypot",)),
    ("honeypot beats head", req(honeypot=True, method="HEAD"), "bot", ("honeypot", "http:head")),
    # --- prefetch
    ("head click", req(method="HEAD"), "prefetch", ("http:head",)),
    ("head open", opened(method="HEAD"), "prefetch", ("http:head",)),
    ("office link check", req(user_agent=OFFICE_DISCOVERY), "prefetch", ("ua:office-discovery",)),
    (
        "head beats proxy",
        opened(method="HEAD", user_agent=GMAIL_PROXY),
        "prefetch",
        ("http:head", "ua:google-image-proxy"),
    ),
    # --- proxy (opens)
    ("gmail proxy open", opened(user_agent=GMAIL_PROXY), "proxy", ("ua:google-image-proxy",)),
    ("yahoo proxy open", opened(user_agent=YAHOO_PROXY), "proxy", ("ua:yahoo-proxy",)),
    (
        "apple mpp open",
        opened(ip=APPLE_IP, user_agent=APPLE_MAIL),
        "proxy",
        ("net:apple-mpp", "ua:mail-client:AppleMail"),
    ),
    (
        "apple mpp bare agent",
        opened(ip=APPLE_IP, user_agent="Mozilla/5.0"),
        "proxy",
        ("net:apple-mpp",),
    ),
    (
        "mpp from private relay egress",
        opened(ip=RELAY_IP, user_agent="Mozilla/5.0", at=DELIVERED + 1),
        "proxy",
        ("net:apple-mpp",),
    ),
    (
        "mpp from private relay ipv6",
        opened(ip=RELAY_IP6, user_agent="Mozilla/5.0"),
        "proxy",
        ("net:apple-mpp",),
    ),
    (
        "safari behind private relay opens",
        opened(ip=RELAY_IP, user_agent=SAFARI),
        "human",
        ("net:apple-range",),
    ),
    (
        "apple mpp ipv6",
        opened(ip="2620:149:a:b::1", user_agent=IOS_MAIL),
        "proxy",
        ("net:apple-mpp", "ua:mail-client:AppleMail"),
    ),
    (
        "apple range click is a person",
        req(ip=APPLE_IP, user_agent=SAFARI),
        "human",
        ("net:apple-range",),
    ),
    ("proxy agent clicking", req(user_agent=GMAIL_PROXY), "bot", ("ua:google-image-proxy",)),
    # --- bot by agent or network
    (
        "barracuda",
        req(user_agent=BARRACUDA),
        "bot",
        ("ua:security-scanner:Barracuda", "ua:crawler"),
    ),
    ("mimecast open", opened(user_agent=MIMECAST), "bot", ("ua:security-scanner:Mimecast",)),
    ("scanner range", req(ip="198.51.100.9"), "bot", ("net:scanner-range",)),
    ("safe links click", req(ip=EOP_IP), "bot", ("net:scanner:microsoft",)),
    ("safe links open", opened(ip=EOP_IP, user_agent=EDGE), "bot", ("net:scanner:microsoft",)),
    ("googlebot network", req(ip=GOOGLEBOT_IP), "bot", ("net:crawler:google",)),
    (
        "gmail proxy from google network",
        opened(ip=GOOGLEBOT_IP, user_agent=GMAIL_PROXY),
        "proxy",
        ("ua:google-image-proxy", "net:crawler:google"),
    ),
    (
        "outlook link card",
        req(user_agent=MICROSOFT_PREVIEW),
        "prefetch",
        ("ua:link-preview:Microsoft",),
    ),
    (
        "yahoo link card",
        req(user_agent=YAHOO_PREVIEW),
        "prefetch",
        ("ua:link-preview:Yahoo",),
    ),
    ("slack unfurl", req(user_agent=SLACKBOT), "bot", ("ua:unfurler:Slack", "ua:crawler")),
    ("teams unfurl", req(user_agent=TEAMS), "bot", ("ua:unfurler:Teams", "ua:crawler")),
    ("discord unfurl", req(user_agent=DISCORD), "bot", ("ua:unfurler:Discord", "ua:crawler")),
    (
        "sandbox opens at once",
        opened(at=DELIVERED + 1.2),
        "bot",
        ("open:too-fast",),
    ),
    ("googlebot", opened(user_agent=GOOGLEBOT), "bot", ("ua:crawler",)),
    ("headless chrome", req(user_agent=HEADLESS), "bot", ("ua:crawler", "ua:headless")),
    (
        "python-requests",
        req(user_agent="python-requests/2.31.0"),
        "bot",
        ("ua:crawler", "ua:headless"),
    ),
    ("go client", opened(user_agent="Go-http-client/1.1"), "bot", ("ua:crawler", "ua:headless")),
    ("empty agent", opened(user_agent=""), "bot", ("ua:empty",)),
    ("blank agent", req(user_agent="   "), "bot", ("ua:empty",)),
    ("bare mozilla click elsewhere", req(user_agent="Mozilla/5.0"), "human", ("ua:bare-mozilla",)),
    (
        "bare mozilla open elsewhere: opened, maybe",
        opened(user_agent="Mozilla/5.0 (compatible)"),
        "proxy",
        ("ua:bare-mozilla",),
    ),
    (
        "bare mozilla from a scanner network",
        opened(ip=EOP_IP, user_agent="Mozilla/5.0"),
        "bot",
        ("net:scanner:microsoft", "ua:bare-mozilla"),
    ),
    (
        "bare mozilla clicking too fast",
        req(user_agent="Mozilla/5.0", at=DELIVERED + 1),
        "bot",
        ("click:too-fast", "ua:bare-mozilla"),
    ),
    # --- bot by behaviour
    ("click too fast", req(at=DELIVERED + 2.9), "bot", ("click:too-fast",)),
    ("click before delivery noted", req(at=DELIVERED - 1), "bot", ("click:too-fast",)),
    (
        "outlook click too fast",
        req(user_agent=OUTLOOK_MSOFFICE, at=DELIVERED + 1),
        "bot",
        ("click:too-fast", "ua:mail-client:Outlook"),
    ),
    ("burst of links", req(recent_clicks=(LATER - 1.5,)), "bot", ("click:burst",)),
    ("burst after", req(recent_clicks=(LATER + 2.0,)), "bot", ("click:burst",)),
    (
        "scanner, fast and bursting",
        req(
            user_agent=MIMECAST, at=DELIVERED + 1, recent_clicks=(DELIVERED + 0.5, DELIVERED + 0.7)
        ),
        "bot",
        ("ua:security-scanner:Mimecast", "click:too-fast", "click:burst"),
    ),
    (
        "curl from apple space is no mpp",
        opened(ip=APPLE_IP, user_agent="curl/8.4.0"),
        "bot",
        ("ua:crawler", "ua:headless", "net:apple-range"),
    ),
]


@pytest.mark.parametrize(
    ("facts", "klass", "reasons"),
    [pytest.param(facts, klass, reasons, id=name) for name, facts, klass, reasons in LABELLED],
)
def test_labelled_requests(
    classifier: Classifier, facts: RequestFacts, klass: str, reasons: tuple[str, ...]
) -> None:
    result = classifier.classify(facts)
    assert (result.klass, result.reasons) == (klass, reasons)


@pytest.mark.parametrize(
    "agent", [OUTLOOK_DESKTOP, OUTLOOK_MSOFFICE, OUTLOOK_IOS, MAC_OUTLOOK, APPLE_MAIL_NATIVE]
)
def test_mail_clients_the_crawler_list_calls_bots_stay_human(
    classifier: Classifier, agent: str
) -> None:
    """The reason mail clients are recognised first: crawlerdetect alone says bot."""
    assert CrawlerDetect().is_crawler(agent)
    assert classifier.classify(opened(user_agent=agent)).klass == "human"


def test_image_proxies_are_crawlers_to_crawlerdetect_but_proxies_here(
    classifier: Classifier,
) -> None:
    assert CrawlerDetect().is_crawler(GMAIL_PROXY)
    assert classifier.classify(opened(user_agent=GMAIL_PROXY)).klass == "proxy"


def test_click_window_and_burst_window_are_configurable() -> None:
    strict = Classifier(bot_click_window=60.0, ignore_networks=[], burst_window=10.0)
    facts = req(at=DELIVERED + 30, recent_clicks=(DELIVERED + 22,))
    assert strict.classify(facts).reasons == ("click:too-fast", "click:burst")
    lenient = Classifier(bot_click_window=1.0, ignore_networks=[], burst_window=5.0)
    assert lenient.classify(facts).klass == "human"


def test_sender_window_is_configurable() -> None:
    facts = req(ip="203.0.113.50", sender_ip="203.0.113.50", submitted_at=LATER - 100)
    assert (
        Classifier(bot_click_window=3, ignore_networks=[], sender_window=60).classify(facts).klass
        == "human"
    )
    assert (
        Classifier(bot_click_window=3, ignore_networks=[], sender_window=120).classify(facts).klass
        == "self"
    )


def test_recent_clicks_beyond_the_limit_are_not_read(classifier: Classifier) -> None:
    far = tuple(LATER - 1000 - i for i in range(64))
    assert classifier.classify(req(recent_clicks=(*far, LATER - 1))).klass == "human"
    assert classifier.classify(req(recent_clicks=(LATER - 1, *far))).klass == "bot"


def test_huge_agent_is_cut_before_analysis(classifier: Classifier) -> None:
    """Agents are cached; a client must not fill the cache with 8 KB keys or stall the regexes."""
    huge = CHROME + " " + "x" * 100_000 + " curl/8.0"
    assert classifier.classify(req(user_agent=huge)) == classifier.classify(req())
    assert classifier.agent_signals.cache_info().maxsize == 4096


def test_agent_analysis_is_cached(classifier: Classifier) -> None:
    agent = CHROME + " cache-probe"
    classifier.classify(req(user_agent=agent))
    hits = classifier.agent_signals.cache_info().hits
    classifier.classify(opened(user_agent=agent, ip=APPLE_IP))
    assert classifier.agent_signals.cache_info().hits == hits + 1


def write_data(folder: Path, ranges: str, agents: str) -> Path:
    (folder / "apple_mpp_ranges.txt").write_text(ranges, encoding="utf-8")
    (folder / "mail_security_agents.txt").write_text(agents, encoding="utf-8")
    return folder


def test_data_files_from_ops_apple_csv_and_custom_agents(tmp_path: Path) -> None:
    """Files in data_dir replace the shipped ones of the same name, the others stay."""
    data = write_data(tmp_path, "17.0.0.0/8\n", "# ours\nAcme Gateway: AcmeGW/\n")
    (tmp_path / "apple_private_relay.txt").write_text(
        "# Apple's CSV as published\n192.0.2.0/27,GB,GB-EN,London,\n\n2001:db8:b3c0::/45,GB,,,\n",
        encoding="utf-8",
    )
    (tmp_path / "scanner_networks.txt").write_text("acme 198.18.0.0/15\n", encoding="utf-8")
    classifier = Classifier(bot_click_window=3, ignore_networks=[], data_dir=data)
    assert classifier.classify(opened(ip="192.0.2.17", user_agent="Mozilla/5.0")).reasons == (
        "net:apple-mpp",
    )
    assert classifier.classify(opened(ip="2001:db8:b3c7::1", user_agent=IOS_MAIL)).klass == "proxy"
    assert classifier.classify(opened(ip=RELAY_IP, user_agent="Mozilla/5.0")).reasons == (
        "ua:bare-mozilla",
    )  # the shipped relay list was replaced
    assert classifier.classify(req(ip="198.18.4.4")).reasons == ("net:scanner:acme",)
    assert classifier.classify(req(ip=EOP_IP)).klass == "human"  # shipped scanners replaced
    assert classifier.classify(req(ip=GOOGLEBOT_IP)).klass == "bot"  # shipped crawlers kept
    scanner = classifier.classify(req(user_agent=CHROME + " acmegw/2.1"))
    assert scanner.reasons == ("ua:security-scanner:Acme Gateway",)


@pytest.mark.parametrize(
    ("ranges", "agents", "message"),
    [
        ("17.0.0.0/8\n10.0.0.300/8\n", "A: b\n", "apple_mpp_ranges.txt:2"),
        ("17.0.0.1/8\n", "A: b\n", "apple_mpp_ranges.txt:1"),  # host bits set: a typo
        ("apple two 17.0.0.0/8\n", "A: b\n", "apple_mpp_ranges.txt:1"),
        ("ap<ple 17.0.0.0/8\n", "A: b\n", "apple_mpp_ranges.txt:1"),
        ("17.0.0.0/8\n", "# c\nMimecast\n", "mail_security_agents.txt:2"),
        ("17.0.0.0/8\n", "Vendor:   \n", "mail_security_agents.txt:1"),
    ],
)
def test_bad_data_file_lines_are_named(
    tmp_path: Path, ranges: str, agents: str, message: str
) -> None:
    data = write_data(tmp_path, ranges, agents)
    with pytest.raises(ValueError, match=message):
        Classifier(bot_click_window=3, ignore_networks=[], data_dir=data)


def test_shipped_data_files_load() -> None:
    agents = dict(load_security_agents(DATA_DIR / "mail_security_agents.txt"))
    assert {"Barracuda", "Mimecast", "Proofpoint", "Cisco", "Zscaler", "CheckPoint"} <= set(agents)
    assert not any(
        "outlook" in needle
        for _vendor, needle in load_security_agents(DATA_DIR / "mail_security_agents.txt")
    )
    apple = read_labelled_networks(DATA_DIR / "apple_mpp_ranges.txt")
    assert ("apple", ipaddress.ip_network("17.0.0.0/8")) in apple


def test_network_set_membership() -> None:
    nets = NetworkTable(
        ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.0.2.128/25", "2001:db8::/32", "::/128")
    )
    inside = ("10.255.0.1", "192.0.2.200", "2001:db8:ffff::1", "::", "::ffff:10.1.2.3")
    outside = ("11.0.0.1", "192.0.2.127", "2001:db9::1", "::1")
    assert all(parse_address(a) in nets for a in inside)
    assert not any(parse_address(a) in nets for a in outside)
    assert None not in nets
    assert parse_address("10.0.0.1") not in NetworkTable([])


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("10.1.2.255", "10.1.2.0"),
        ("2001:db8:abcd:1234:5678::1", "2001:db8:abcd::"),
        ("2001:db8:abcd::", "2001:db8:abcd::"),
        ("::ffff:198.51.100.23", "198.51.100.0"),
        (" 203.0.113.9 ", "203.0.113.0"),
        ("not-an-ip", ""),
        ("", ""),
    ],
)
def test_anonymize_ip(ip: str, expected: str) -> None:
    assert anonymize_ip(ip) == expected


def test_address_lookup_is_cached_and_bounded(classifier: Classifier) -> None:
    """Parsing an address is the dearest step; a garbage address string must stay cheap."""
    assert classifier.classify(req(ip="9" * 100_000)).klass == "human"
    assert classifier.network_signals.cache_info().maxsize == 4096
    before = classifier.network_signals.cache_info().hits
    classifier.classify(opened(ip=APPLE_IP))
    classifier.classify(req(ip=APPLE_IP))
    assert classifier.network_signals.cache_info().hits >= before + 1


def test_sender_ip_matches_across_notations(classifier: Classifier) -> None:
    facts = req(ip="::ffff:203.0.113.50", sender_ip="203.0.113.50", submitted_at=LATER - 5)
    assert classifier.classify(facts).reasons == ("self:sender-ip",)
