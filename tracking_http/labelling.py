"""From a verified hit to a class with reasons: the facts the Classifier needs, gathered.

The Classifier (tracking_http.classify) is pure; this module keeps the little
it must remember between requests, all of it bounded: recent clicks per copy
and client (for ``click:burst``) and the clients that followed a message's
honeypot link (so their later hits are bots too). Earlier events of such a
client are relabelled in the store (Store.record_hit with relabel_client).

A burst is one client's: a gateway fetching every link of a copy is one, a
reader clicking a link a second after the gateway fetched another is not.
Time-of-click protection (Safe Links, URL Defense) makes that the usual case
in companies, so the client is the address's network (IPv4 /24, IPv6 /64:
scanners spread one burst over neighbouring addresses) and the agent's family.

The network data can be replaced while the server runs (``reload``): a new
Classifier is built off the event loop and swapped in whole.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from relay.core.config import TrackingConfig
from relay.core.models import Copy, EventClass
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenData
from tracking_http.classify import (
    MAX_IP_CHARS,
    UA_CACHE_SIZE,
    Classification,
    Classifier,
    NetworkSignals,
    RequestFacts,
)
from tracking_http.clients import ClientKey, ua_family
from tracking_http.networks import parse_address
from tracking_http.privacy import network_of

log = logging.getLogger("tracking_http.labelling")

ADMIN_COOKIE = "relay_admin"  # set by the admin dashboard on login; its bearer is the sender
MAX_ADMIN_COOKIE = 4096
SENDER_WINDOW = 300.0  # seconds after submission when the sender's own IP counts as self
BURST_WINDOW = 2.0  # seconds: other links of one copy clicked this close together is a burst
CLICKS_PER_COPY = 16  # recent clicks remembered per copy
COPIES_REMEMBERED = 10_000
HONEYPOT_CLIENTS = 10_000
OPENS_REMEMBERED = 4096  # open labels by client and circumstances (classify costs ~20 us)
BURST_V4_PREFIX = 24
BURST_V6_PREFIX = 64
# What an open's class depends on: the address's signals (not the address: a new
# client from a known kind of network costs one lookup), user agent, method, admin
# cookie, the client hit the honeypot, it is the sender's own address within the
# window, within bot_open_window of delivery.
OpenKey = tuple[bool, str | None, str | None, bool, str, str, bool, bool, bool, bool]
BurstClient = tuple[str, str]  # network, agent family


@dataclass(frozen=True)
class Sender:
    """Where and when the message was submitted (for ``self:sender-ip``)."""

    ip: str
    at: float


class Label(NamedTuple):
    klass: EventClass
    reasons: tuple[str, ...]
    honeypot: bool  # this hit is the honeypot link: relabel the client's other events
    client: ClientKey | None = None  # opens: who opened, for "possibly forwarded"


def burst_client(ip: str, user_agent: str) -> BurstClient:
    """Who counts as one client for ``click:burst``: network (/24, /64) and agent family."""
    address = parse_address(ip)
    if address is None:
        return ip[:64], ua_family(user_agent)
    bits = address.max_prefixlen
    keep = BURST_V4_PREFIX if bits == 32 else BURST_V6_PREFIX
    network = int(address) >> (bits - keep)
    return f"{address.version}:{network:x}", ua_family(user_agent)


class RecentClicks:
    """The last few clicks of each of the most recently clicked copies (LRU-bounded)."""

    def __init__(self, copies: int = COPIES_REMEMBERED, per_copy: int = CLICKS_PER_COPY) -> None:
        self._copies = copies
        self._per_copy = per_copy
        self._seen: OrderedDict[int, deque[tuple[int, float, BurstClient]]] = OrderedDict()

    def others(
        self, copy_id: int, link_index: int | None, client: BurstClient
    ) -> tuple[float, ...]:
        """Times of this client's remembered clicks on other links of this copy."""
        clicks = self._seen.get(copy_id, ())
        index = -1 if link_index is None else link_index
        return tuple(at for seen, at, who in clicks if seen != index and who == client)

    def add(self, copy_id: int, link_index: int | None, at: float, client: BurstClient) -> None:
        clicks = self._seen.get(copy_id)
        if clicks is None:
            clicks = self._seen[copy_id] = deque(maxlen=self._per_copy)
            if len(self._seen) > self._copies:
                self._seen.popitem(last=False)
        self._seen.move_to_end(copy_id)
        clicks.append((-1 if link_index is None else link_index, at, client))


class HoneypotClients:
    """(message, ip, user agent) triples that followed the message's honeypot (LRU-bounded)."""

    def __init__(self, size: int = HONEYPOT_CLIENTS) -> None:
        self._size = size
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)


def submitted_by(client_addr: str, received_at: float) -> Sender | None:
    """The sender's submission address, unless it was loopback: a program or MTA on the
    relay's own host handed the mail on, and its address says nothing about the sender."""
    address = parse_address(client_addr)
    if address is None or address.is_loopback:
        return None
    return Sender(client_addr, received_at)


def build_classifier(config: TrackingConfig) -> Classifier:
    """Loads the data files: call once per app (and per reload), never per request."""
    return Classifier(
        bot_click_window=config.bot_click_window,
        bot_open_window=config.bot_open_window,
        ignore_networks=config.ignore_networks,
        scanner_networks=config.scanner_networks,
        data_dir=Path(config.data_dir) if config.data_dir else None,
        sender_window=SENDER_WINDOW,
        burst_window=BURST_WINDOW,
    )


def admin_cookie_present(value: str | None) -> bool:
    """The dashboard's cookie is there. Its value is not checked here (the tracking server
    holds no sessions), so a reader could only make their own hits count as "self"."""
    return bool(value) and len(value or "") <= MAX_ADMIN_COOKIE


class HitLabeller:
    """Classifies hits; with tracking.classify off, everything is "human" without reasons."""

    def __init__(self, config: TrackingConfig) -> None:
        self._config = config
        self._classifier = build_classifier(config) if config.classify else None
        self._reloading: asyncio.Lock | None = None
        self._clicks = RecentClicks()
        self._honeypot = HoneypotClients()
        self._family = functools.lru_cache(maxsize=UA_CACHE_SIZE)(ua_family)
        self._unlabelled = Label("human", (), honeypot=False)
        self._opens: OrderedDict[OpenKey, Classification] = OrderedDict()

    def label(
        self,
        token: TokenData,
        copy: Copy,
        sender: Sender | None,
        *,
        method: str,
        ip: str,
        user_agent: str,
        at: float,
        admin_cookie: bool,
    ) -> Label:
        if self._classifier is None:
            return self._unlabelled
        is_click = token.kind == "click"
        honeypot = is_click and token.link_index == HONEYPOT_LINK_INDEX
        client = (copy.message_id, ip, user_agent)
        key: OpenKey | None = None
        delivered = copy.delivered_at
        if not is_click:  # an open's class depends on these alone: remembered (bounded)
            where = self._classifier.network_signals(ip[:MAX_IP_CHARS])
            fast = delivered is not None and at - delivered < self._config.bot_open_window
            key = (
                where.ignore,
                where.scanner,
                where.crawler,
                where.apple,
                user_agent,
                method,
                admin_cookie,
                client in self._honeypot,
                self._is_sender(where, sender, at),
                fast,
            )
            known = self._opens.get(key)
            if known is not None:
                self._opens.move_to_end(key)
                return self._open_label(known, where, user_agent)
        who_clicks = burst_client(ip, user_agent) if is_click else ("", "")
        facts = RequestFacts(
            kind="click" if is_click else "open",
            method=method,
            ip=ip,
            user_agent=user_agent,
            at=at,
            delivered_at=delivered,
            has_admin_cookie=admin_cookie,
            sender_ip=None if sender is None else sender.ip,
            submitted_at=None if sender is None else sender.at,
            recent_clicks=self._clicks.others(copy.id, token.link_index, who_clicks)
            if is_click
            else (),
            honeypot=honeypot,
            honeypot_hit_by_client=client in self._honeypot,
        )
        if honeypot:
            self._honeypot.add(client)
        elif is_click:
            self._clicks.add(copy.id, token.link_index, at, who_clicks)
        result = self._classifier.classify(facts)
        if key is None:
            return Label(result.klass, result.reasons, honeypot=honeypot)
        if len(self._opens) >= OPENS_REMEMBERED:
            self._opens.popitem(last=False)  # O(1); a dict's first key is not, after churn
        self._opens[key] = result
        return self._open_label(result, where, user_agent)

    def _is_sender(self, where: NetworkSignals, sender: Sender | None, at: float) -> bool:
        """The open comes from the sender's own submission address, within the window."""
        if sender is None or where.address is None or not 0 <= at - sender.at <= SENDER_WINDOW:
            return False
        assert self._classifier is not None
        return self._classifier.network_signals(sender.ip[:MAX_IP_CHARS]).address == where.address

    def _open_label(self, result: Classification, where: NetworkSignals, user_agent: str) -> Label:
        """The class is shared by every client with the same signals; who opened is not."""
        network = "" if where.address is None else network_of(where.address)
        who = ClientKey(self._family(user_agent), network)
        return Label(result.klass, result.reasons, honeypot=False, client=who)

    async def reconfigure(self, config: TrackingConfig) -> bool:
        """SIGHUP: windows, ignore and scanner networks, data_dir from the new config, and the
        network data read again. The old classifier stays if the new one cannot be built."""
        if self._classifier is None or not config.classify:
            return False
        old = self._config
        self._config = config
        if await self.reload(force=True):
            return True
        self._config = old
        return False

    async def reload(self, *, force: bool = False) -> bool:
        """Read the network data again if a file changed (or always, with force); True if
        the new data is in use. A file that fails to load leaves the old data in use and
        logs one line naming the file and line."""
        if self._classifier is None:
            return False
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:
            data_dir = Path(self._config.data_dir) if self._config.data_dir else None
            if not force and not self._classifier.networks.changed(data_dir):
                return False
            try:
                fresh = await asyncio.to_thread(build_classifier, self._config)
            except (OSError, ValueError) as exc:
                log.error("network data not reloaded, the old data stays in use: %s", exc)
                return False
            self._classifier = fresh
            self._opens.clear()
            log.info("network data reloaded: %s", describe_networks(fresh))
            return True


def describe_networks(classifier: Classifier) -> str:
    data = classifier.networks
    apple = sum(len(table) for table in data.apple)
    return (
        f"{apple} Apple ranges, {len(data.crawlers)} crawler ranges, "
        f"{len(data.scanners)} scanner ranges"
    )
