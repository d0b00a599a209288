"""The live feed: recorded events fanned out to Server-Sent Events streams.

The recording path publishes each stored event to the EventBroker at once;
a StoreFollower reads the store by id whenever the store says other
processes recorded events (PostgreSQL: LISTEN/NOTIFY, so events of every
node arrive at once) or once a second (SQLite), so events recorded by
another process (replies come from the SMTP role; tracking workers) arrive too,
and it sends checkpoints: ids up to which the store has been read, which
the streams hand to browsers as the ``Last-Event-ID`` to resume from.

Publishing never waits: the feeds read one bounded log, each at its own
cursor, and one that falls more than the log's length behind is dropped
(its stream ends; the browser reconnects and catches up from the store),
so a slow feed can never hold up a pixel.
Webhooks (the durable outbox) are in relay.webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from relay.core.metrics import Metrics
from relay.core.models import Event
from relay.core.store import Store
from relay.core.tasks import cancel_and_wait

log = logging.getLogger("tracking_http.notify")

QUEUE_SIZE = 10_000  # items a feed may lag behind before it is dropped
MAX_SUBSCRIBERS = 1_000
MAX_REMEMBERED = 100_000  # ids published but not yet seen by the follower
POLL_INTERVAL = 1.0
MIN_INTERVAL = 0.05  # at most 20 reads a second, however often the store says "new events"
POLL_PAGE = 1000

EventSink = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Checkpoint:
    """Every event with an id up to ``event_id`` has been published."""

    event_id: int


FeedItem = Event | Checkpoint


class TooManySubscribers(Exception):
    """MAX_SUBSCRIBERS feeds are open already."""


class Subscription:
    """One stream's place in the broker's shared log: a cursor, never a copy of the items."""

    def __init__(self, broker: EventBroker, cursor: int) -> None:
        self._broker = broker
        self.cursor = cursor
        self.dropped = False

    async def next_batch(self, within: float) -> list[FeedItem] | None:
        """Every item published since the last call, waiting up to ``within`` seconds for one.

        [] after ``within`` seconds of silence; None when the feed is closed or
        this subscriber fell so far behind that its items left the log.
        """
        return await self._broker.read(self, within)


class EventBroker:
    """In-process fan-out of recorded events to live feeds; publish never blocks.

    One shared, bounded log that every feed reads with its own cursor: a
    publish costs the same with one feed or a thousand, and a feed takes all
    it missed in one read (one write to its client per commit batch, not
    one per event: per-event hand-offs made 100 feeds fall minutes behind a
    1,000 events/s burst).
    """

    def __init__(
        self, queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS
    ) -> None:
        self._log: list[FeedItem] = []
        self._start = 0  # the sequence number of self._log[0]
        self._capacity = queue_size
        self._changed = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._max_subscribers = max_subscribers
        self._published: set[int] = set()
        self.checkpoint = 0
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def _end(self) -> int:
        return self._start + len(self._log)

    def subscribe(self) -> Subscription:
        if self.closed or len(self._subscribers) >= self._max_subscribers:
            raise TooManySubscribers
        sub = Subscription(self, self._end)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, events: Sequence[Event]) -> None:
        """From the recording path: stored events (with ids), pushed to every feed now.

        With no feed open there is no one to push to: a feed that opens later
        starts from the store (LiveFeed._backlog), never from this log.
        """
        if not self._subscribers:
            return
        fresh = [e for e in events if e.id is not None and e.id > self.checkpoint]
        for event in fresh:
            if len(self._published) < MAX_REMEMBERED:
                self._published.add(event.id)  # type: ignore[arg-type]
        self._append(fresh)

    def publish_from_store(self, events: Sequence[Event], upto: int) -> None:
        """From the follower: what the store holds up to ``upto`` that was not pushed yet."""
        items: list[FeedItem] = [
            e for e in events if e.id is not None and e.id not in self._published
        ]
        if upto > self.checkpoint:
            self.checkpoint = upto
            self._published = {i for i in self._published if i > upto}
            items.append(Checkpoint(upto))
        self._append(items)

    async def read(self, sub: Subscription, within: float) -> list[FeedItem] | None:
        """What ``sub`` has not seen yet (Subscription.next_batch)."""
        if sub.cursor >= self._end and not self.closed:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await changed.wait()
        if self.closed:
            return None
        if sub.cursor < self._start:
            log.warning("live feed dropped: it fell %d items behind", self._capacity)
            sub.dropped = True
            self.unsubscribe(sub)
            return None
        items = self._log[sub.cursor - self._start :]
        sub.cursor = self._end
        return items

    def close(self) -> None:
        """At shutdown: every stream ends, so the server need not wait for them."""
        self.closed = True
        self._subscribers.clear()
        self._changed.set()

    def _append(self, items: Sequence[FeedItem]) -> None:
        """Add to the log and wake every waiting feed once; trimmed in halves (amortised O(1))."""
        if not items:
            return
        self._log.extend(items)
        if len(self._log) > 2 * self._capacity:
            cut = len(self._log) - self._capacity
            del self._log[:cut]
            self._start += cut
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


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
        await cancel_and_wait(self._task)

    async def poll_once(self) -> int:
        """Read everything past the checkpoint; returns how many events were read.

        With no feed open only the checkpoint moves (one indexed max(id)): reading
        and decoding every event for no one cost the busy pixel server a core's
        fraction. A feed that opens meanwhile reads its start from the store
        after subscribing, so it starts at or past that checkpoint.
        """
        if not self._broker.subscribers:
            upto = await self._store.last_event_id()
            if not self._broker.subscribers and upto > self._broker.checkpoint:
                self._broker.publish_from_store((), upto)
            return 0
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
            try:
                await self._store.wait_for_events(self.interval)
            except Exception:  # the store may be down for a while; the feed waits
                await asyncio.sleep(self.interval)
            await asyncio.sleep(MIN_INTERVAL)  # a busy store wakes it often: in batches
            try:
                await self.poll_once()
            except Exception:  # the store may be down for a while; the feed waits
                log.warning("live feed: cannot read new events", exc_info=True)


def recorded_sink(broker: EventBroker | None, metrics: Metrics | None) -> EventSink:
    """What the recording path calls with the events it stored: the feed, the counters."""

    counters: dict[tuple[str, str], Any] = {}  # labels() takes a lock and builds a key

    def recorded(events: Sequence[Event]) -> None:
        if broker is not None:
            broker.publish(events)
        if metrics is not None:
            for event in events:
                key = (event.kind, event.klass)
                counter = counters.get(key)
                if counter is None:
                    counter = counters[key] = metrics.tracking_events.labels(*key)
                counter.inc()

    return recorded
