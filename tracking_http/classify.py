"""Who fetched a pixel or followed a link: human, bot, proxy, prefetch or self (SPEC section 7).

Counting a security scanner or Apple's privacy proxy as a reader makes the
numbers lie; dropping those events hides information. So every event is
kept and labelled, and the label comes with every signal seen (``reasons``),
not only the one that decided it.

Precedence (the first class with a signal wins):

1. ``self``: the client is in ``ignore_networks`` (``self:ignore-network``),
   carries the admin dashboard cookie (``self:admin-cookie``), or is the
   sender's own submission IP within ``sender_window`` of submission
   (``self:sender-ip``).
2. ``bot``: the honeypot link, or a client that hit this message's
   honeypot before (``honeypot``).
3. ``prefetch``: a HEAD request (``http:head``), Office's link check
   (``ua:office-discovery``) or a mail product's link-preview card
   (``ua:link-preview:<Vendor>``).
4. ``proxy`` (opens only): Google's and Yahoo's image proxies
   (``ua:google-image-proxy``, ``ua:yahoo-proxy``); Apple Mail Privacy
   Protection, which fetches with a bare ``Mozilla/5.0`` or a WebKit agent
   naming no browser from Apple's or iCloud Private Relay's networks
   (``net:apple-mpp``); a bare ``Mozilla/5.0`` from anywhere else that is no
   scanner's or crawler's network (``ua:bare-mozilla``: "opened, maybe",
   most likely Private Relay space newer than the data file).
5. ``bot``: mail security scanners by agent (``ua:security-scanner:<Vendor>``)
   or by their published networks, whatever agent they send
   (``net:scanner:<vendor>``; configured ones ``net:scanner-range``),
   crawlers' published networks (``net:crawler:<name>``), crawlerdetect
   (``ua:crawler``), chat and social unfurlers (``ua:unfurler:<Name>``),
   headless browsers and HTTP libraries (``ua:headless``), an empty agent
   (``ua:empty``); then behaviour: a click sooner than ``bot_click_window``
   after delivery (``click:too-fast``), other links of the copy followed by
   the same client within ``burst_window`` (``click:burst``, the caller
   passes only that client's clicks), a plain browser fetching the pixel
   sooner than ``bot_open_window`` after delivery from outside Apple's
   networks (``open:too-fast``: a gateway's sandbox opening the message).
6. ``human``. A bare ``Mozilla/5.0`` click stays ``human`` with its reason:
   the agent alone does not make a bot.

Real mail clients (Outlook, Thunderbird, Apple Mail, iOS Mail, ...) are
recognised before crawlerdetect and the bare-agent rules run, because
crawler lists name Outlook and Apple Mail agents: they get
``ua:mail-client:<Family>`` instead. Behaviour and network rules still apply
to them. A request from Apple's networks that is not MPP (a person behind
iCloud Private Relay) carries ``net:apple-range``, with no effect on the class.

The network data (tracking_http/data, or newer copies in
``tracking.data_dir`` installed by ``relay update-data``) is read into
sorted interval tables (tracking_http.networks) when the classifier is
built; ``NetworkData.load`` is the one place that reads it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from crawlerdetect import CrawlerDetect

from relay.core.limits import MAX_USER_AGENT
from relay.core.models import EventClass
from tracking_http.networks import (
    FileStamp,
    IPAddress,
    Network,
    NetworkTable,
    load_table,
    parse_address,
    stamp,
)

DATA_DIR = Path(__file__).parent / "data"
APPLE_MPP_FILE = "apple_mpp_ranges.txt"  # Apple's own address space
APPLE_RELAY_FILE = "apple_private_relay.txt"  # iCloud Private Relay egress (Apple's CSV)
CRAWLER_FILE = "crawler_networks.txt"
SCANNER_FILE = "scanner_networks.txt"
SECURITY_AGENTS_FILE = "mail_security_agents.txt"
NETWORK_FILES = (APPLE_MPP_FILE, APPLE_RELAY_FILE, CRAWLER_FILE, SCANNER_FILE)

UA_CACHE_SIZE = 4096
MAX_IP_CHARS = 64  # the longest textual IPv6 address is 45
IP_CACHE_SIZE = 4096
MAX_RECENT_CLICKS = 64  # the caller's list; more proves nothing more
BURST_LINKS = 2  # clicks (this one included) within burst_window that make a burst

# Apple Mail and iOS Mail render with WebKit but, unlike Safari, name no browser; Apple's
# Mail Privacy Protection sends the same agent (or a bare Mozilla/5.0).
WEBKIT_NO_BROWSER = (
    r"Mozilla/5\.0 \([^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\)(?: Mobile/\w+)?"
)
MAIL_CLIENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern, re.IGNORECASE))
    for family, pattern in (
        ("Outlook", r"Microsoft Outlook|ms-office|MSOffice \d|Outlook-(?:iOS|Android)|Outlook/\d"),
        ("Outlook", r"MacOutlook/|Microsoft Office Outlook|Outlook-Express/"),
        ("Thunderbird", r"Thunderbird/"),
        ("AppleMail", rf"^{WEBKIT_NO_BROWSER}$"),
        ("AppleMail", r"^Mail/\d[\d.]* .*(?:CFNetwork|Darwin)"),
        ("Gmail", r"\bGmail\b|GmailExtension"),
        ("YahooMail", r"YahooMobile"),
        ("AndroidMail", r"K-9 Mail|K9Mail|FairEmail|AquaMail|BlueMail|Samsung ?Email"),
        ("OtherMail", r"Airmail|Canary(?:%20| )Mail|Polymail/|Spark/\d|eM Client|Mailbird"),
    )
)
MPP_AGENT = re.compile(rf"Mozilla/5\.0|{WEBKIT_NO_BROWSER}")  # fullmatch: what MPP sends
# Browsers, most specific first (Edge and Opera say Chrome, Chrome says Safari).
BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern))
    for family, pattern in (
        ("Edge", r"\bEdg(?:e|A|iOS)?/\d"),
        ("Opera", r"\bOPR/\d|\bOpera\b"),
        ("Firefox", r"\bFirefox/\d|\bFxiOS/\d"),
        ("Chrome", r"\bChrome/\d|\bCriOS/\d|\bChromium/\d"),
        ("Safari", r"\bVersion/[\d.]+ (?:Mobile/\w+ )?Safari/"),
    )
)
OFFICE_DISCOVERY = re.compile(r"Microsoft Office (?:Existence|Protocol) Discovery", re.IGNORECASE)
# The recipient's own mail product drawing a card for a link (SPEC section 7: prefetch).
LINK_PREVIEWS: tuple[tuple[str, str], ...] = (
    ("microsoftpreview", "ua:link-preview:Microsoft"),  # Outlook's link cards
    ("yahoo link preview", "ua:link-preview:Yahoo"),  # Yahoo Mail's link cards
)
# Chat and social unfurlers: someone pasted the link somewhere (SPEC section 7: bot).
UNFURLERS: tuple[tuple[str, str], ...] = (
    ("slackbot", "ua:unfurler:Slack"),
    ("slack-imgproxy", "ua:unfurler:Slack"),
    ("discordbot", "ua:unfurler:Discord"),
    ("skypeuripreview", "ua:unfurler:Teams"),
    ("microsoft teams", "ua:unfurler:Teams"),
    ("facebookexternalhit", "ua:unfurler:Facebook"),
    ("facebookcatalog", "ua:unfurler:Facebook"),
    ("twitterbot", "ua:unfurler:X"),
    ("linkedinbot", "ua:unfurler:LinkedIn"),
    ("telegrambot", "ua:unfurler:Telegram"),
    ("whatsapp", "ua:unfurler:WhatsApp"),
)
IMAGE_PROXIES: tuple[tuple[str, str], ...] = (
    ("googleimageproxy", "ua:google-image-proxy"),
    ("yahoomailproxy", "ua:yahoo-proxy"),
)
HEADLESS = re.compile(
    r"Headless|PhantomJS|SlimerJS|Puppeteer|Playwright|Selenium|WebDriver|python-requests|"
    r"python-urllib|python-httpx|aiohttp/|libwww-perl|\bcurl/|\bWget/|Go-http-client|"
    r"\bJava/|Apache-HttpClient|node-fetch|axios/|undici",
    re.IGNORECASE,
)
BARE_MOZILLA = re.compile(r"Mozilla/\d\.\d(?: \(compatible\))?", re.IGNORECASE)


class RequestFacts(NamedTuple):
    """What the caller knows about one tracking request; nothing here is looked up again.

    A tuple, not a frozen dataclass: built on every hit, and a frozen dataclass's
    __init__ costs a setattr per field (a tenth of labelling a new client)."""

    kind: Literal["open", "click"]
    method: str  # "GET" / "HEAD"
    ip: str  # client address (already resolved through trusted proxies)
    user_agent: str
    at: float  # unix time of the request
    delivered_at: float | None  # when the copy was delivered upstream
    has_admin_cookie: bool = False  # the browser carries the admin dashboard cookie
    sender_ip: str | None = None  # the IP the message was submitted from
    submitted_at: float | None = None
    recent_clicks: tuple[float, ...] = ()  # this client's clicks of other links of the copy
    honeypot: bool = False  # this request is the honeypot link
    honeypot_hit_by_client: bool = False  # this client (ip+ua) hit this message's honeypot


class Classification(NamedTuple):
    klass: EventClass
    reasons: tuple[str, ...]  # stable short codes, every signal seen


@dataclass(frozen=True)
class AgentSignals:
    """What the user agent alone says; cached per agent string."""

    client: tuple[str, ...] = ()
    prefetch: tuple[str, ...] = ()
    proxy: tuple[str, ...] = ()
    bot: tuple[str, ...] = ()
    bare: bool = False  # a bare Mozilla/5.0: MPP from Apple's networks, suspect elsewhere
    mpp_like: bool = False  # what MPP sends (bare, or WebKit naming no browser)
    browser: bool = False  # a plain browser, no mail client: a sandbox if it opens at once


@dataclass(frozen=True)
class NetworkSignals:
    """What the client address alone says; cached per address."""

    address: IPAddress | None
    ignore: bool = False
    scanner: str | None = None  # the vendor's label; "" for a configured scanner network
    crawler: str | None = None
    apple: bool = False

    def codes(self) -> tuple[str, ...]:
        """The bot reasons of the address."""
        seen: list[str] = []
        if self.scanner is not None:
            seen.append(f"net:scanner:{self.scanner}" if self.scanner else "net:scanner-range")
        if self.crawler is not None:
            seen.append(f"net:crawler:{self.crawler}")
        return tuple(seen)


@dataclass(frozen=True)
class NetworkData:
    """The published networks the classifier knows, and the files they came from."""

    apple: tuple[NetworkTable, ...]
    crawlers: NetworkTable
    scanners: NetworkTable
    stamps: tuple[FileStamp | None, ...]

    @classmethod
    def load(cls, data_dir: Path | None = None) -> NetworkData:
        """Each file from data_dir when it is there (refreshed by relay update-data), else the
        snapshot shipped in tracking_http/data. Raises ValueError naming a bad line."""
        paths = [data_file(name, data_dir) for name in NETWORK_FILES]
        apple_own, apple_relay, crawlers, scanners = (load_table(path) for path in paths)
        return cls(
            apple=(apple_own, apple_relay),
            crawlers=crawlers,
            scanners=scanners,
            stamps=tuple(stamp(path) for path in paths),
        )

    def changed(self, data_dir: Path | None) -> bool:
        """A file was replaced (or appeared in data_dir) since these tables were read."""
        return self.stamps != tuple(stamp(data_file(name, data_dir)) for name in NETWORK_FILES)


def data_file(name: str, data_dir: Path | None) -> Path:
    if data_dir is not None and (data_dir / name).is_file():
        return data_dir / name
    return DATA_DIR / name


def load_security_agents(path: Path) -> tuple[tuple[str, str], ...]:
    """``Vendor: substring`` lines -> (vendor, lower-case substring); ``#`` comments."""
    agents: list[tuple[str, str]] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        vendor, colon, substring = line.partition(":")
        if not colon or not vendor.strip() or not substring.strip():
            raise ValueError(f"{path}:{number}: expected 'Vendor: substring', got {line!r}")
        agents.append((vendor.strip(), substring.strip().lower()))
    return tuple(agents)


class Classifier:
    """Labels requests; loads its data files once, then does no I/O."""

    def __init__(
        self,
        *,
        bot_click_window: float,
        ignore_networks: Sequence[Network],
        scanner_networks: Sequence[Network] = (),
        data_dir: Path | None = None,
        networks: NetworkData | None = None,
        sender_window: float = 300.0,
        burst_window: float = 2.0,
        bot_open_window: float = 2.0,
    ) -> None:
        self._bot_click_window = bot_click_window
        self._bot_open_window = bot_open_window
        self._sender_window = sender_window
        self._burst_window = burst_window
        self._ignore = NetworkTable(ignore_networks)
        self._configured_scanners = NetworkTable(scanner_networks)
        self.networks = NetworkData.load(data_dir) if networks is None else networks
        self._security_agents = load_security_agents(data_file(SECURITY_AGENTS_FILE, data_dir))
        self._crawlers = CrawlerDetect()
        self.agent_signals = functools.lru_cache(maxsize=UA_CACHE_SIZE)(self._agent_signals)
        self.network_signals = functools.lru_cache(maxsize=IP_CACHE_SIZE)(self._network_signals)

    def classify(self, facts: RequestFacts) -> Classification:
        """The class from the precedence in the module docstring; reasons from every rule."""
        where = self.network_signals(facts.ip[:MAX_IP_CHARS])
        agent = self.agent_signals(facts.user_agent[:MAX_USER_AGENT])
        is_open = facts.kind == "open"
        honeypot = ("honeypot",) if facts.honeypot or facts.honeypot_hit_by_client else ()
        head = ("http:head",) if facts.method.upper() == "HEAD" else ()
        mpp = where.apple and agent.mpp_like
        machine_net = where.codes()
        suspect = ("ua:bare-mozilla",) if agent.bare and not where.apple else ()
        proxy = agent.proxy + (("net:apple-mpp",) if mpp else ())
        if not machine_net:
            proxy += suspect
        bot = agent.bot + machine_net + (() if is_open else agent.proxy)
        tiers: tuple[tuple[EventClass, tuple[str, ...]], ...] = (
            ("self", self._self_signals(facts, where)),
            ("bot", honeypot),
            ("prefetch", head + agent.prefetch),
            ("proxy", proxy if is_open else ()),
            ("bot", bot + self._behaviour_signals(facts, agent, where)),
        )
        klass: EventClass = next((name for name, seen in tiers if seen), "human")
        reasons = [code for _name, seen in tiers for code in seen]
        reasons += suspect
        if where.apple and not (mpp and is_open):  # a person behind iCloud Private Relay
            reasons.append("net:apple-range")
        reasons += agent.client
        return Classification(klass, tuple(dict.fromkeys(reasons)))

    def _network_signals(self, ip: str) -> NetworkSignals:
        """Parsing an address costs more than the rest of classify(); cached per address."""
        address = parse_address(ip)
        if address is None:
            return NetworkSignals(None)
        data = self.networks
        version, value = address.version, int(address)
        scanner = data.scanners.find(version, value)
        configured = self._configured_scanners
        if scanner is None and configured and configured.find(version, value) is not None:
            scanner = ""
        ignore = self._ignore
        own, relay = data.apple
        return NetworkSignals(
            address,
            ignore=bool(ignore) and ignore.find(version, value) is not None,
            scanner=scanner,
            crawler=data.crawlers.find(version, value),
            apple=relay.find(version, value) is not None or own.find(version, value) is not None,
        )

    def _self_signals(self, facts: RequestFacts, where: NetworkSignals) -> tuple[str, ...]:
        seen: list[str] = []
        if where.ignore:
            seen.append("self:ignore-network")
        if facts.has_admin_cookie:
            seen.append("self:admin-cookie")
        if (
            where.address is not None
            and facts.sender_ip is not None
            and facts.submitted_at is not None
            and 0 <= facts.at - facts.submitted_at <= self._sender_window
            and self.network_signals(facts.sender_ip[:MAX_IP_CHARS]).address == where.address
        ):
            seen.append("self:sender-ip")
        return tuple(seen)

    def _behaviour_signals(
        self, facts: RequestFacts, agent: AgentSignals, where: NetworkSignals
    ) -> tuple[str, ...]:
        since = None if facts.delivered_at is None else facts.at - facts.delivered_at
        if facts.kind == "open":
            if agent.browser and not where.apple and since is not None:
                return ("open:too-fast",) if since < self._bot_open_window else ()
            return ()
        seen: list[str] = []
        if since is not None and since < self._bot_click_window:
            seen.append("click:too-fast")
        window = self._burst_window
        near = sum(
            1 for t in facts.recent_clicks[:MAX_RECENT_CLICKS] if abs(facts.at - t) <= window
        )
        if near + 1 >= BURST_LINKS:
            seen.append("click:burst")
        return tuple(seen)

    def _agent_signals(self, user_agent: str) -> AgentSignals:
        """Proxies and mail clients first, so crawler lists never overrule them."""
        agent = user_agent.strip()
        lowered = agent.lower()
        scanners = tuple(
            f"ua:security-scanner:{vendor}"
            for vendor, needle in self._security_agents
            if needle in lowered
        )
        if OFFICE_DISCOVERY.search(agent):
            return AgentSignals(prefetch=("ua:office-discovery",), bot=scanners)
        previews = _codes(lowered, LINK_PREVIEWS)
        if previews:
            return AgentSignals(prefetch=previews, bot=scanners)
        proxy = _codes(lowered, IMAGE_PROXIES)
        if proxy:
            return AgentSignals(proxy=proxy, bot=scanners)
        mpp_like = MPP_AGENT.fullmatch(agent) is not None
        client = tuple(
            f"ua:mail-client:{family}" for family, rx in MAIL_CLIENTS if rx.search(agent)
        )
        if client:
            return AgentSignals(
                client=tuple(dict.fromkeys(client)), bot=scanners, mpp_like=mpp_like
            )
        if agent and BARE_MOZILLA.fullmatch(agent):
            return AgentSignals(bot=scanners, bare=True, mpp_like=mpp_like)
        bot = tuple(
            dict.fromkeys(scanners + _codes(lowered, UNFURLERS) + self._unknown_agent(agent))
        )
        browser = not bot and any(rx.search(agent) for _family, rx in BROWSERS)
        return AgentSignals(bot=bot, browser=browser)

    def _unknown_agent(self, agent: str) -> tuple[str, ...]:
        if not agent:
            return ("ua:empty",)
        seen: list[str] = []
        if self._crawlers.is_crawler(agent):
            seen.append("ua:crawler")
        if HEADLESS.search(agent):
            seen.append("ua:headless")
        return tuple(seen)


def _codes(lowered: str, table: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(code for needle, code in table if needle in lowered))
