"""The recording path: a verified token and a request become a stored Event.

The HTTP answer waits for the store (group commit: an acknowledged event is
durable) but only for ``record_timeout`` seconds. A slow, closed or failing
store costs the event, never the recipient's redirect or pixel. A write
still in flight when the wait ends is shielded, so it may yet land.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import OrderedDict
from dataclasses import dataclass

from relay.core.config import TrackingConfig
from relay.core.models import Copy, Event, EventClass
from relay.core.store import Store
from relay.core.tokens import TokenData
from tracking_http.client_ip import in_networks, parse_ip

log = logging.getLogger("tracking_http.events")

MAX_USER_AGENT = 512
RECORD_TIMEOUT = 1.0  # seconds the answer waits for its event to be durable
COPY_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Hit:
    """What the request told us, apart from the token."""

    ip: str
    user_agent: str
    at: float


def anonymize_ip(ip: str) -> str:
    """Keep the network, drop the host: IPv4 to its /24, IPv6 to its /48."""
    address = parse_ip(ip)
    if address is None:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


def classify_network(ip: str, config: TrackingConfig) -> tuple[EventClass, tuple[str, ...]]:
    """``self`` for the sender's own networks; ``human`` otherwise (classification comes later)."""
    address = parse_ip(ip)
    if address is not None and in_networks(address, config.ignore_networks):
        return "self", ("ignore_networks",)
    return "human", ()


class CopyCache:
    """Who a copy belongs to never changes: remember it rather than ask the store per hit."""

    def __init__(self, store: Store, size: int = COPY_CACHE_SIZE) -> None:
        self._store = store
        self._size = size
        self._known: OrderedDict[int, Copy] = OrderedDict()

    async def get(self, copy_id: int) -> Copy | None:
        copy = self._known.get(copy_id)
        if copy is not None:
            self._known.move_to_end(copy_id)
            return copy
        copy = await self._store.get_copy(copy_id)
        if copy is not None:
            self._known[copy_id] = copy
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return copy


class EventRecorder:
    """Turns hits into events and stores them within a time bound."""

    def __init__(
        self, config: TrackingConfig, store: Store, timeout: float = RECORD_TIMEOUT
    ) -> None:
        self._config = config
        self._store = store
        self._timeout = timeout
        self._copies = CopyCache(store)

    async def record(self, token: TokenData, hit: Hit) -> None:
        """Store one event; returns when it is durable, or after the timeout, never raising.

        A timeout only stops the wait: a write already queued in the store's
        writer is committed with its batch all the same.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await self._write(token, hit)
        except TimeoutError:
            log.warning(
                "store slow: answered %s of copy %d before its event was stored",
                token.kind,
                token.copy_id,
            )

    async def drain(self) -> None:
        """At shutdown nothing is left to wait for: the store's writer flushes its queue."""

    async def _write(self, token: TokenData, hit: Hit) -> None:
        try:
            copy = await self._copies.get(token.copy_id)
            if copy is None:
                log.info("%s for unknown copy %d: not recorded", token.kind, token.copy_id)
                return
            await self._store.record_event(self._event(token, hit, copy.message_id, copy.recipient))
        except Exception:
            log.exception("could not record %s of copy %d", token.kind, token.copy_id)

    def _event(self, token: TokenData, hit: Hit, message_id: str, recipient: str | None) -> Event:
        klass, reasons = classify_network(hit.ip, self._config)
        ip = anonymize_ip(hit.ip) if self._config.privacy.anonymize_ip else hit.ip
        return Event(
            kind=token.kind,
            copy_id=token.copy_id,
            message_id=message_id,
            recipient=recipient,
            at=hit.at,
            ip=ip,
            user_agent=hit.user_agent[:MAX_USER_AGENT],
            klass=klass,
            reasons=reasons,
            url=(token.url or "") if token.kind == "click" else "",
            link_index=token.link_index if token.kind == "click" else None,
        )
