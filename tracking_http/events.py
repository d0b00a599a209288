"""The recording path: a verified token and a request become a stored Event.

The HTTP answer waits for the store (group commit: an acknowledged event is
durable) but only for ``record_timeout`` seconds. A slow, closed or failing
store costs the event, never the recipient's redirect or pixel. A write
still in flight when the wait ends is shielded, so it may yet land.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass

from relay.core.config import TrackingConfig
from relay.core.models import Copy, Event
from relay.core.store import Store
from relay.core.tokens import TokenData
from tracking_http.clients import ClientKey
from tracking_http.labelling import HitLabeller, Label, Sender, submitted_by
from tracking_http.notify import EventSink
from tracking_http.privacy import anonymize_ip

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
    method: str = "GET"
    admin_cookie: bool = False  # the browser carries the admin dashboard's cookie


class CopyCache:
    """Who a copy belongs to rarely changes: remember it rather than ask the store per hit.

    A copy not yet delivered is not remembered (its delivered_at is still to
    come). An erased recipient may linger here, but the store records each
    event with the copy's current recipient (Store.record_hit).
    """

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
        if copy is not None and copy.delivered_at is not None:
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
        self._senders: OrderedDict[str, Sender | None] = OrderedDict()
        self._labeller = HitLabeller(config)
        self.on_recorded: EventSink | None = None  # live feed, counters (tracking_http.notify)

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
            sender = await self._sender(copy.message_id) if self._config.classify else None
            label = self._labeller.label(
                token,
                copy,
                sender,
                method=hit.method,
                ip=hit.ip,
                user_agent=hit.user_agent[:MAX_USER_AGENT],
                at=hit.at,
                admin_cookie=hit.admin_cookie,
            )
            event = self._event(token, hit, copy, label)
            recorded = await self._store.record_hit(event, relabel_client=label.honeypot)
            if self.on_recorded is not None:
                self.on_recorded(recorded)
        except Exception:
            log.exception("could not record %s of copy %d", token.kind, token.copy_id)

    async def _sender(self, message_id: str) -> Sender | None:
        """Where the message was submitted from; remembered like copies (bounded)."""
        if message_id in self._senders:
            self._senders.move_to_end(message_id)
            return self._senders[message_id]
        message = await self._store.get_message(message_id)
        sender = None if message is None else submitted_by(message.client_addr, message.received_at)
        self._senders[message_id] = sender
        if len(self._senders) > COPY_CACHE_SIZE:
            self._senders.popitem(last=False)
        return sender

    def _event(self, token: TokenData, hit: Hit, copy: Copy, label: Label) -> Event:
        """The IP is anonymised only after classification, which needs the whole address."""
        ip = anonymize_ip(hit.ip) if self._config.privacy.anonymize_ip else hit.ip
        return Event(
            kind=token.kind,
            copy_id=token.copy_id,
            message_id=copy.message_id,
            recipient=copy.recipient,
            at=hit.at,
            ip=ip,
            user_agent=hit.user_agent[:MAX_USER_AGENT],
            klass=label.klass,
            reasons=label.reasons,
            url=(token.url or "") if token.kind == "click" else "",
            link_index=token.link_index if token.kind == "click" else None,
            extra=client_extra(label.client),
        )


def client_extra(client: ClientKey | None) -> dict[str, str]:
    """Stored with an open so the report can tell clients apart (store/counting.py)."""
    if client is None or not client.network:
        return {}
    return {"ua_family": client.family, "network": client.network}
