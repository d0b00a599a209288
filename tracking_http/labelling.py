"""From a verified hit to a class with reasons: the facts the Classifier needs, gathered.

The Classifier (tracking_http.classify) is pure; this module keeps the little
it must remember between requests, all of it bounded: recent clicks per copy
(for ``click:burst``) and the clients that followed a message's honeypot link
(so their later hits are bots too). Earlier events of such a client are
relabelled in the store (Store.record_hit with relabel_client).
"""

from __future__ import annotations

import functools
from collections import OrderedDict, deque
from dataclasses import dataclass

from relay.core.config import TrackingConfig
from relay.core.models import Copy, EventClass
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenData
from tracking_http.classify import IP_CACHE_SIZE, UA_CACHE_SIZE, Classifier, RequestFacts
from tracking_http.clients import ClientKey, ua_family
from tracking_http.networks import parse_address
from tracking_http.privacy import anonymize_ip

ADMIN_COOKIE = "relay_admin"  # set by the admin dashboard on login; its bearer is the sender
MAX_ADMIN_COOKIE = 4096
SENDER_WINDOW = 300.0  # seconds after submission when the sender's own IP counts as self
BURST_WINDOW = 2.0  # seconds: other links of one copy clicked this close together is a burst
CLICKS_PER_COPY = 16  # recent clicks remembered per copy
COPIES_REMEMBERED = 10_000
HONEYPOT_CLIENTS = 10_000
OPENS_REMEMBERED = 4096  # open labels by client and circumstances (classify costs ~20 us)
# ip, user agent, method, admin cookie, client hit the honeypot, the sender's IP while
# within the window after submission (else ""): all an open's label depends on.
OpenKey = tuple[str, str, str, bool, bool, str]


@dataclass(frozen=True)
class Sender:
    """Where and when the message was submitted (for ``self:sender-ip``)."""

    ip: str
    at: float


@dataclass(frozen=True)
class Label:
    klass: EventClass
    reasons: tuple[str, ...]
    honeypot: bool  # this hit is the honeypot link: relabel the client's other events
    client: ClientKey | None = None  # opens: who opened, for "possibly forwarded"


class RecentClicks:
    """The last few clicks of each of the most recently clicked copies (LRU-bounded)."""

    def __init__(self, copies: int = COPIES_REMEMBERED, per_copy: int = CLICKS_PER_COPY) -> None:
        self._copies = copies
        self._per_copy = per_copy
        self._seen: OrderedDict[int, deque[tuple[int, float]]] = OrderedDict()

    def others(self, copy_id: int, link_index: int | None) -> tuple[float, ...]:
        """Times of this copy's remembered clicks on other links."""
        clicks = self._seen.get(copy_id, ())
        return tuple(at for index, at in clicks if index != link_index)

    def add(self, copy_id: int, link_index: int | None, at: float) -> None:
        clicks = self._seen.get(copy_id)
        if clicks is None:
            clicks = self._seen[copy_id] = deque(maxlen=self._per_copy)
            if len(self._seen) > self._copies:
                self._seen.popitem(last=False)
        self._seen.move_to_end(copy_id)
        clicks.append((-1 if link_index is None else link_index, at))


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
    """Loads the data files: call once per app, never per request."""
    return Classifier(
        bot_click_window=config.bot_click_window,
        ignore_networks=config.ignore_networks,
        scanner_networks=config.scanner_networks,
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
        self._enabled = config.classify
        self._classifier = build_classifier(config) if config.classify else None
        self._clicks = RecentClicks()
        self._honeypot = HoneypotClients()
        self._family = functools.lru_cache(maxsize=UA_CACHE_SIZE)(ua_family)
        self._network = functools.lru_cache(maxsize=IP_CACHE_SIZE)(anonymize_ip)
        self._unlabelled = Label("human", (), honeypot=False)
        self._opens: dict[OpenKey, Label] = {}

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
        if not is_click:  # an open's label depends on these alone: remembered (bounded)
            own = sender.ip if sender and 0 <= at - sender.at <= SENDER_WINDOW else ""
            key = (ip, user_agent, method, admin_cookie, client in self._honeypot, own)
            known = self._opens.get(key)
            if known is not None:
                return known
        facts = RequestFacts(
            kind="click" if is_click else "open",
            method=method,
            ip=ip,
            user_agent=user_agent,
            at=at,
            delivered_at=copy.delivered_at,
            has_admin_cookie=admin_cookie,
            sender_ip=None if sender is None else sender.ip,
            submitted_at=None if sender is None else sender.at,
            recent_clicks=self._clicks.others(copy.id, token.link_index) if is_click else (),
            honeypot=honeypot,
            honeypot_hit_by_client=client in self._honeypot,
        )
        if honeypot:
            self._honeypot.add(client)
        elif is_click:
            self._clicks.add(copy.id, token.link_index, at)
        result = self._classifier.classify(facts)
        if key is None:
            return Label(result.klass, result.reasons, honeypot=honeypot)
        who = ClientKey(self._family(user_agent), self._network(ip))
        label = Label(result.klass, result.reasons, honeypot=False, client=who)
        if len(self._opens) >= OPENS_REMEMBERED:
            del self._opens[next(iter(self._opens))]
        self._opens[key] = label
        return label
