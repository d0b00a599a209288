"""The recording path: a verified token and a request become a stored Event.

The HTTP answer waits for the store (group commit: an acknowledged event is
durable) but only for RECORD_TIMEOUT seconds. A slow, closed or failing
store costs the event, never the recipient's redirect or pixel. A write
already handed to the writer when the wait ends is committed with its batch
all the same, so it may yet land.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from typing import NamedTuple

from relay.core.config import TrackingConfig
from relay.core.limits import MAX_USER_AGENT
from relay.core.models import Copy, Event, event_from
from relay.core.store import Store, StoreUnavailable
from relay.core.tokens import TokenData
from tracking_http.classify import IP_CACHE_SIZE
from tracking_http.clients import ClientKey
from tracking_http.labelling import HitLabeller, Label, Sender, submitted_by
from tracking_http.notify import EventSink
from tracking_http.privacy import anonymize_ip

log = logging.getLogger("tracking_http.events")

RECORD_TIMEOUT = 1.0  # seconds the answer waits for its event to be durable
COPY_CACHE_SIZE = 10_000


class Hit(NamedTuple):
    """What the request told us, apart from the token (a tuple: built on every request)."""

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

    def known(self, copy_id: int) -> Copy | None:
        """The remembered copy, without asking the store."""
        copy = self._known.get(copy_id)
        if copy is not None:
            self._known.move_to_end(copy_id)
        return copy

    async def get(self, copy_id: int) -> Copy | None:
        copy = self.known(copy_id)
        if copy is not None:
            return copy
        copy = await self._store.get_copy(copy_id)
        if copy is not None and copy.delivered_at is not None:
            self._known[copy_id] = copy
            if len(self._known) > self._size:
                self._known.popitem(last=False)
        return copy


class EventRecorder:
    """Turns hits into events and stores them within a time bound.

    The store bounds each write by its own hit timeout (Store.record_hit).
    """

    def __init__(
        self,
        config: TrackingConfig,
        store: Store,
        timeout: float = RECORD_TIMEOUT,
    ) -> None:
        self._config = config
        self._store = store
        self._timeout = timeout
        self._copies = CopyCache(store)
        self._senders: OrderedDict[str, Sender | None] = OrderedDict()
        self._labeller = HitLabeller(config)
        self._anonymize = functools.lru_cache(maxsize=IP_CACHE_SIZE)(anonymize_ip)
        self.on_recorded: EventSink | None = None  # live feed, counters (tracking_http.notify)

    async def record(self, token: TokenData, hit: Hit) -> None:
        """Store one event; returns when it is durable, or after the timeout, never raising.

        A timeout only stops the wait: a write already handed to the writer is
        committed with its batch all the same. With the copy and its sender
        remembered (the usual case) nothing is read, and the writer's own
        bound is the only timer: no per-request ``asyncio.timeout``.
        """
        copy = self._copies.known(token.copy_id)
        classify = self._config.classify
        if copy is not None and (not classify or copy.message_id in self._senders):
            sender = self._senders[copy.message_id] if classify else None
            await self._store_event(token, hit, copy, sender)
            return
        try:
            async with asyncio.timeout(self._timeout):
                await self._write(token, hit)
        except TimeoutError:
            _slow(token)

    async def reconfigure(self, config: TrackingConfig) -> bool:
        """SIGHUP: the classifier's settings and data from the new config (labelling)."""
        return await self._labeller.reconfigure(config)

    async def reload_networks(self, *, force: bool = False) -> bool:
        """New network data in use if a file changed (always, with force); see labelling."""
        return await self._labeller.reload(force=force)

    async def _write(self, token: TokenData, hit: Hit) -> None:
        """The first hit of a copy: who it belongs to and who sent it are read first."""
        try:
            copy = await self._copies.get(token.copy_id)
            if copy is None:
                log.info("%s for unknown copy %d: not recorded", token.kind, token.copy_id)
                return
            sender = await self._sender(copy.message_id) if self._config.classify else None
        except Exception:
            log.exception("could not record %s of copy %d", token.kind, token.copy_id)
            return
        await self._store_event(token, hit, copy, sender)

    async def _store_event(
        self, token: TokenData, hit: Hit, copy: Copy, sender: Sender | None
    ) -> None:
        try:
            user_agent = hit.user_agent[:MAX_USER_AGENT]
            label = self._labeller.label(
                token,
                copy,
                sender,
                method=hit.method,
                ip=hit.ip,
                user_agent=user_agent,
                at=hit.at,
                admin_cookie=hit.admin_cookie,
            )
            event = self._event(token, hit, copy, label, user_agent)
            recorded = await self._store.record_hit(event, label.honeypot)
        except TimeoutError:
            _slow(token)
        except StoreUnavailable as exc:
            log.warning("%s of copy %d not recorded: %s", token.kind, token.copy_id, exc)
        except Exception:
            log.exception("could not record %s of copy %d", token.kind, token.copy_id)
        else:
            if self.on_recorded is not None:
                self.on_recorded(recorded)

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

    def _event(
        self, token: TokenData, hit: Hit, copy: Copy, label: Label, user_agent: str
    ) -> Event:
        """The IP is anonymised only after classification, which needs the whole address.

        Every field is given, so the frozen dataclass's __init__ (a setattr
        per field: about three times the cost, on every hit) is skipped.
        """
        ip = self._anonymize(hit.ip) if self._config.privacy.anonymize_ip else hit.ip
        click = token.kind == "click"
        return event_from(
            {},
            kind=token.kind,
            copy_id=token.copy_id,
            message_id=copy.message_id,
            recipient=copy.recipient,
            at=hit.at,
            ip=ip,
            user_agent=user_agent,
            klass=label.klass,
            reasons=label.reasons,
            url=(token.url or "") if click else "",
            link_index=token.link_index if click else None,
            inferred=False,
            id=None,
            extra=client_extra(label.client),
        )


def _slow(token: TokenData) -> None:
    log.warning(
        "store slow: answered %s of copy %d before its event was stored",
        token.kind,
        token.copy_id,
    )


def client_extra(client: ClientKey | None) -> dict[str, str]:
    """Stored with an open so the report can tell clients apart (store/sql/counting.py)."""
    if client is None or not client.network:
        return {}
    return {"ua_family": client.family, "network": client.network}
