"""The live feed: recorded events fanned out to Server-Sent Events streams.

The recording path publishes each stored event to the EventBroker at once;
a StoreFollower polls the store by id, so events recorded by another
process (a split deployment: replies come from the SMTP role) arrive too,
and it sends checkpoints: ids up to which the store has been read, which
the streams hand to browsers as the ``Last-Event-ID`` to resume from.

Publishing never waits: each subscriber has a bounded queue, and one that
falls behind is dropped (its stream ends; the browser reconnects and
catches up from the store), so a slow feed can never hold up a pixel.
Webhooks (the durable outbox) are in tracking_http.webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from relay.core.metrics import Metrics
from relay.core.models import Event
from relay.core.store import Store

log = logging.getLogger("tracking_http.notify")

QUEUE_SIZE = 10_000  # events a feed may lag behind before it is dropped
MAX_SUBSCRIBERS = 1_000
MAX_REMEMBERED = 100_000  # ids published but not yet seen by the follower
POLL_INTERVAL = 1.0
POLL_PAGE = 1000

EventSink = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Checkpoint:
    """Every event with an id up to ``event_id`` has been published."""

    event_id: int


FeedItem = Event | Checkpoint | None  # None: the feed is closed


class TooManySubscribers(Exception):
    """MAX_SUBSCRIBERS feeds are open already."""


class Subscription:
    """One stream's bounded queue of feed items."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[FeedItem] = asyncio.Queue(size + 1)  # +1: the closing None
        self.size = size
        self.dropped = False

    def offer(self, item: FeedItem) -> bool:
        """False when the queue is full: the subscriber is too slow and is dropped."""
        if self.queue.qsize() >= self.size:
            return False
        self.queue.put_nowait(item)
        return True

    def close(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    async def next(self, within: float) -> FeedItem | bool:
        """The next item, or False after ``within`` seconds of silence."""
        try:
            return await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return False


class EventBroker:
    """In-process fan-out of recorded events to live feeds; publish never blocks."""

    def __init__(
        self, queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS
    ) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._max_subscribers = max_subscribers
        self._published: set[int] = set()
        self.checkpoint = 0
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        if self.closed or len(self._subscribers) >= self._max_subscribers:
            raise TooManySubscribers
        sub = Subscription(self._queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, events: Sequence[Event]) -> None:
        """From the recording path: stored events (with ids), pushed to every feed now."""
        for event in events:
            if event.id is None or event.id <= self.checkpoint:
                continue
            if len(self._published) < MAX_REMEMBERED:
                self._published.add(event.id)
            self._offer(event)

    def publish_from_store(self, events: Sequence[Event], upto: int) -> None:
        """From the follower: what the store holds up to ``upto`` that was not pushed yet."""
        for event in events:
            if event.id is not None and event.id not in self._published:
                self._offer(event)
        if upto > self.checkpoint:
            self.checkpoint = upto
            self._published = {i for i in self._published if i > upto}
            self._offer(Checkpoint(upto))

    def close(self) -> None:
        """At shutdown: every stream ends, so the server need not wait for them."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()

    def _offer(self, item: Event | Checkpoint) -> None:
        for sub in list(self._subscribers):
            if not sub.offer(item):
                log.warning("live feed dropped: it fell %d events behind", sub.size)
                sub.dropped = True
                sub.close()
                self._subscribers.discard(sub)


class StoreFollower:
    """Polls the store by id and feeds the broker what the recording path did not push."""

    def __init__(self, store: Store, broker: EventBroker, interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._broker = broker
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._broker.checkpoint = await self._store.last_event_id()
        self._task = asyncio.create_task(self._run(), name="live-feed-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def poll_once(self) -> int:
        """Read everything past the checkpoint; returns how many events were read."""
        total = 0
        while True:
            since = self._broker.checkpoint
            events = await self._store.list_events(since_id=since, limit=POLL_PAGE)
            if not events:
                return total
            total += len(events)
            self._broker.publish_from_store(events, max(e.id or 0 for e in events))
            if len(events) < POLL_PAGE:
                return total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except Exception:  # the store may be down for a while; the feed waits
                log.warning("live feed: cannot read new events", exc_info=True)


def recorded_sink(broker: EventBroker | None, metrics: Metrics | None) -> EventSink:
    """What the recording path calls with the events it stored: the feed, the counters."""

    def recorded(events: Sequence[Event]) -> None:
        if broker is not None:
            broker.publish(events)
        if metrics is not None:
            for event in events:
                metrics.tracking_events.labels(event.kind, event.klass).inc()

    return recorded
