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
3. ``prefetch``: a HEAD request (``http:head``) or Office's link check
   (``ua:office-discovery``).
4. ``proxy`` (opens only): Google's and Yahoo's image proxies
   (``ua:google-image-proxy``, ``ua:yahoo-proxy``) and any agent from the
   Apple Mail Privacy Protection networks (``net:apple-mpp``). A click from
   Apple's networks is a person behind iCloud Private Relay
   (``net:apple-range``, no effect on the class).
5. ``bot``: mail security scanners from the data file
   (``ua:security-scanner:<Vendor>``), configured scanner networks
   (``net:scanner-range``), crawlerdetect (``ua:crawler``), headless browsers
   and HTTP libraries (``ua:headless``), an empty or bare ``Mozilla/5.0``
   agent (``ua:empty``, ``ua:bare-mozilla``); then behaviour: a click sooner
   than ``bot_click_window`` after delivery (``click:too-fast``) or other
   links of the copy clicked within ``burst_window`` (``click:burst``).
6. ``human``.

Real mail clients (Outlook, Thunderbird, Apple Mail, iOS Mail, ...) are
recognised before crawlerdetect and the bare-agent rules run, because
crawler lists name Outlook and Apple Mail agents: they get
``ua:mail-client:<Family>`` instead. Behaviour rules still apply to them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from crawlerdetect import CrawlerDetect

from relay.core.models import EventClass
from tracking_http.networks import IPAddress, Network, NetworkSet, load_networks, parse_address

DATA_DIR = Path(__file__).parent / "data"
APPLE_MPP_FILE = "apple_mpp_ranges.txt"
SECURITY_AGENTS_FILE = "mail_security_agents.txt"

MAX_UA_CHARS = 512  # agents are cached and crawlerdetect costs ~1 ms per long agent
UA_CACHE_SIZE = 4096
MAX_IP_CHARS = 64  # the longest textual IPv6 address is 45
IP_CACHE_SIZE = 4096
MAX_RECENT_CLICKS = 64  # the caller's list; more proves nothing more
BURST_LINKS = 2  # clicks (this one included) within burst_window that make a burst

MAIL_CLIENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (family, re.compile(pattern, re.IGNORECASE))
    for family, pattern in (
        ("Outlook", r"Microsoft Outlook|ms-office|MSOffice \d|Outlook-(?:iOS|Android)|Outlook/\d"),
        ("Outlook", r"MacOutlook/|Microsoft Office Outlook"),
        ("Thunderbird", r"Thunderbird/"),
        # Apple Mail and iOS Mail render with WebKit but, unlike Safari, name no browser.
        (
            "AppleMail",
            r"^Mozilla/5\.0 \([^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\)"
            r"(?: Mobile/\w+)?$",
        ),
        ("AppleMail", r"^Mail/\d[\d.]* .*(?:CFNetwork|Darwin)"),
        ("Gmail", r"\bGmail\b|GmailExtension"),
        ("YahooMail", r"YahooMobile"),
        ("AndroidMail", r"K-9 Mail|K9Mail|FairEmail|AquaMail|BlueMail|Samsung ?Email"),
        ("OtherMail", r"Airmail|Canary(?:%20| )Mail|Polymail/|Spark/\d|eM Client|Mailbird"),
    )
)
OFFICE_DISCOVERY = re.compile(r"Microsoft Office (?:Existence|Protocol) Discovery", re.IGNORECASE)
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


@dataclass(frozen=True)
class RequestFacts:
    """What the caller knows about one tracking request; nothing here is looked up again."""

    kind: Literal["open", "click"]
    method: str  # "GET" / "HEAD"
    ip: str  # client address (already resolved through trusted proxies)
    user_agent: str
    at: float  # unix time of the request
    delivered_at: float | None  # when the copy was delivered upstream
    has_admin_cookie: bool = False  # the browser carries the admin dashboard cookie
    sender_ip: str | None = None  # the IP the message was submitted from
    submitted_at: float | None = None
    recent_clicks: tuple[float, ...] = ()  # this copy's other clicks (other links), recent
    honeypot: bool = False  # this request is the honeypot link
    honeypot_hit_by_client: bool = False  # this client (ip+ua) hit this message's honeypot


@dataclass(frozen=True)
class Classification:
    klass: EventClass
    reasons: tuple[str, ...]  # stable short codes, every signal seen


@dataclass(frozen=True)
class AgentSignals:
    """What the user agent alone says; cached per agent string."""

    client: tuple[str, ...] = ()
    prefetch: tuple[str, ...] = ()
    proxy: tuple[str, ...] = ()
    bot: tuple[str, ...] = ()


@dataclass(frozen=True)
class NetworkSignals:
    """What the client address alone says; cached per address."""

    address: IPAddress | None
    ignore: bool = False
    scanner: bool = False
    apple: bool = False


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
        sender_window: float = 300.0,
        burst_window: float = 2.0,
    ) -> None:
        folder = DATA_DIR if data_dir is None else data_dir
        self._bot_click_window = bot_click_window
        self._sender_window = sender_window
        self._burst_window = burst_window
        self._ignore = NetworkSet(ignore_networks)
        self._scanners = NetworkSet(scanner_networks)
        self._apple = NetworkSet(load_networks(folder / APPLE_MPP_FILE))
        self._security_agents = load_security_agents(folder / SECURITY_AGENTS_FILE)
        self._crawlers = CrawlerDetect()
        self.agent_signals = functools.lru_cache(maxsize=UA_CACHE_SIZE)(self._agent_signals)
        self.network_signals = functools.lru_cache(maxsize=IP_CACHE_SIZE)(self._network_signals)

    def classify(self, facts: RequestFacts) -> Classification:
        """The class from the precedence in the module docstring; reasons from every rule."""
        where = self.network_signals(facts.ip[:MAX_IP_CHARS])
        agent = self.agent_signals(facts.user_agent[:MAX_UA_CHARS])
        is_open = facts.kind == "open"
        honeypot = ("honeypot",) if facts.honeypot or facts.honeypot_hit_by_client else ()
        head = ("http:head",) if facts.method.upper() == "HEAD" else ()
        apple = ("net:apple-mpp",) if where.apple and is_open else ()
        scanner = ("net:scanner-range",) if where.scanner else ()
        bot = agent.bot + scanner + (() if is_open else agent.proxy)
        tiers: tuple[tuple[EventClass, tuple[str, ...]], ...] = (
            ("self", self._self_signals(facts, where)),
            ("bot", honeypot),
            ("prefetch", head + agent.prefetch),
            ("proxy", (agent.proxy + apple) if is_open else ()),
            ("bot", bot + self._behaviour_signals(facts)),
        )
        klass: EventClass = next((name for name, seen in tiers if seen), "human")
        reasons = [code for _name, seen in tiers for code in seen]
        if where.apple and not is_open:  # Apple fetches pixels but never clicks: a person
            reasons.append("net:apple-range")
        reasons += agent.client
        return Classification(klass, tuple(dict.fromkeys(reasons)))

    def _network_signals(self, ip: str) -> NetworkSignals:
        """Parsing an address costs more than the rest of classify(); cached per address."""
        address = parse_address(ip)
        if address is None:
            return NetworkSignals(None)
        return NetworkSignals(
            address,
            ignore=address in self._ignore,
            scanner=address in self._scanners,
            apple=address in self._apple,
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

    def _behaviour_signals(self, facts: RequestFacts) -> tuple[str, ...]:
        if facts.kind != "click":
            return ()
        seen: list[str] = []
        if (
            facts.delivered_at is not None
            and facts.at - facts.delivered_at < self._bot_click_window
        ):
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
        proxy = tuple(code for needle, code in IMAGE_PROXIES if needle in lowered)
        if proxy:
            return AgentSignals(proxy=proxy, bot=scanners)
        client = tuple(
            f"ua:mail-client:{family}" for family, rx in MAIL_CLIENTS if rx.search(agent)
        )
        if client:
            return AgentSignals(client=tuple(dict.fromkeys(client)), bot=scanners)
        return AgentSignals(bot=tuple(dict.fromkeys(scanners + self._unknown_agent(agent))))

    def _unknown_agent(self, agent: str) -> tuple[str, ...]:
        if not agent:
            return ("ua:empty",)
        if BARE_MOZILLA.fullmatch(agent):
            return ("ua:bare-mozilla",)
        seen: list[str] = []
        if self._crawlers.is_crawler(agent):
            seen.append("ua:crawler")
        if HEADLESS.search(agent):
            seen.append("ua:headless")
        return tuple(seen)
