"""GET /api/events/stream: Server-Sent Events of every new open, click and reply.

Wire format: each event is ``event: <type>`` and ``data: <JSON>`` (the shape
of /api/events). Resumption ids come from the store, never from the push
order (which can differ from id order across processes): backlog events
carry ``id:``, and checkpoints (``id: N`` with no data, which browsers
record without firing an event) say every event up to N was sent. A client
that reconnects with ``Last-Event-ID`` (the header EventSource sends, or
``?last_event_id=``) gets what it missed from the store, then the live
events; it may see an event twice, never miss one. A client that connects
without it starts at the newest event. Comments (``: ping``) keep idle
connections and proxies alive.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from relay.core.models import Event
from relay.core.store import Store
from tracking_http.admin.api import json_error
from tracking_http.admin.events_api import (
    MAX_EVENTS,
    BadParameter,
    EventQuery,
    event_json,
    parse_event_query,
    parse_id,
)
from tracking_http.notify import Checkpoint, EventBroker, Subscription, TooManySubscribers

log = logging.getLogger("tracking_http.admin")

HEARTBEAT = 15.0
RETRY_MS = 3000
ENCODED_CACHE = 20_000  # live events kept encoded (twice the broker's log)


def sse_event(event: Event, with_id: bool) -> bytes:
    """One SSE message; JSON escapes newlines, so the data stays on one line."""
    head = f"id: {event.id}\n" if with_id else ""
    data = json.dumps(event_json(event), ensure_ascii=True)
    return f"{head}event: {event.kind}\ndata: {data}\n\n".encode("ascii")


def matches(event: Event, q: EventQuery) -> bool:
    return (q.kind is None or event.kind == q.kind) and (
        q.recipient is None or event.recipient == q.recipient
    )


class LiveFeed:
    """The stream handler; ``heartbeat`` is the idle time before a ``: ping`` comment."""

    def __init__(self, store: Store, broker: EventBroker, heartbeat: float = HEARTBEAT) -> None:
        self._store = store
        self.broker = broker
        self.heartbeat = heartbeat
        self._encoding: dict[int, bytes] = {}  # event id -> its live SSE message

    async def stream(self, request: web.Request) -> web.StreamResponse:
        try:
            q = parse_event_query(dict(request.query), default_limit=MAX_EVENTS)
            raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
            resume = parse_id(raw, "Last-Event-ID") if raw else None
        except BadParameter as exc:
            return json_error(400, str(exc))
        try:
            sub = self.broker.subscribe()  # before reading the store: nothing falls between
        except TooManySubscribers:
            return json_error(503, "too many live feeds are open")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        try:
            await response.prepare(request)
            await response.write(f"retry: {RETRY_MS}\n\n".encode())
            floor = await self._backlog(response, q, resume)
            await self._follow(response, sub, q, floor)
        except ConnectionResetError:  # the client went away
            pass
        finally:
            self.broker.unsubscribe(sub)
        return response

    async def _backlog(
        self, response: web.StreamResponse, q: EventQuery, resume: int | None
    ) -> int:
        """Send stored events after ``resume``; returns the id up to which the store was read."""
        floor = await self._store.last_event_id()
        since = resume
        while since is not None and since < floor:
            page = await self._store.list_events(since, q.kind, q.recipient, MAX_EVENTS)
            for event in page:
                if event.id is not None and event.id <= floor:
                    await response.write(sse_event(event, with_id=True))
            since = page[-1].id if len(page) == MAX_EVENTS else None
        await response.write(f"id: {floor}\n\n".encode())
        return floor

    async def _follow(
        self, response: web.StreamResponse, sub: Subscription, q: EventQuery, floor: int
    ) -> None:
        """Live events past ``floor``; returns when the feed is closed or this client dropped.

        All that arrived since the last write goes out in one write, with one
        checkpoint at its end (every event before it was written).
        """
        while True:
            items = await sub.next_batch(self.heartbeat)
            if items is None:
                return
            if not items:
                await response.write(b": ping\n\n")
                continue
            out, start = [], floor
            for item in items:
                if isinstance(item, Checkpoint):
                    floor = max(floor, item.event_id)
                elif item.id is not None and item.id > floor and matches(item, q):
                    out.append(self._encoded(item))
            if floor > start:
                out.append(f"id: {floor}\n\n".encode())
            if out:
                await response.write(b"".join(out))

    def _encoded(self, event: Event) -> bytes:
        """Each live event is encoded once for all feeds (bounded: cleared when full)."""
        key = event.id or 0
        data = self._encoding.get(key)
        if data is None:
            if len(self._encoding) >= ENCODED_CACHE:
                self._encoding.clear()
            data = self._encoding[key] = sse_event(event, with_id=False)
        return data
