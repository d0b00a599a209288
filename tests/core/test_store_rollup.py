"""The hourly rollup behind the charts agrees with the events, whatever changes them.

Each step writes through the real store (pixel batches, single events,
inferred opens, honeypot relabelling, erasure, retention, a message's
deletion cascading to its events); after each, the chart's buckets read from
the rollup must equal counts made here from the events themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from support.messages import BOB, CAROL, Spooled, spool

from relay.core.models import Copy, DeliveryOutcome, Event
from relay.core.store import Store

HOUR, DAY = 3600.0, 86400.0


async def delivered(store: Store, at: float) -> Spooled:
    """A message to Bob and Carol received at `at`, both copies delivered."""
    spooled = await spool(store, received_at=at)
    for copy in spooled.values():
        await store.record_outcome(copy.id, DeliveryOutcome("delivered", "250"), None)
    return spooled


def hit(copy: Copy, at: float, kind: str = "open", klass: str = "human", **more: object) -> Event:
    recipient = copy.recipient
    return Event(kind, copy.id, copy.message_id, recipient, at, "192.0.2.9", "UA", klass, **more)  # type: ignore[arg-type]


async def all_events(store: Store) -> list[Event]:
    events, since = [], 0
    while page := await store.list_events(since, limit=1000):
        events += page
        since = page[-1].id or since
    return events


async def assert_chart_matches_events(store: Store, start: float, end: float) -> None:
    """Hourly and daily buckets from the rollup equal the events counted one by one."""
    for width in (HOUR, DAY):
        expected: Counter[tuple[float, str, str]] = Counter()
        for e in await all_events(store):
            if start <= e.at < end:
                bucket = start + (e.at - start) // width * width
                expected[(bucket, e.kind, "human" if e.inferred else e.klass)] += 1
        buckets = await store.event_histogram(start, end, width)
        assert {(b.start, b.kind, b.klass): b.count for b in buckets} == dict(expected)


async def test_the_rollup_follows_every_change_to_events(store: Store) -> None:
    now = time.time()
    start = (now - 3 * DAY) // DAY * DAY
    end = start + 4 * DAY
    old = await delivered(store, now - 3 * DAY)
    new = await delivered(store, now)
    times = [now - 3 * DAY + i * 997.0 for i in range(200)]  # across many hours
    await asyncio.gather(  # concurrent hits: the writer's multi-row inserts
        *(store.record_hit(hit(new[BOB], at)) for at in times[::2]),
        *(store.record_hit(hit(new[CAROL], at, klass="proxy")) for at in times[1::2]),
    )
    await store.record_event(hit(old[BOB], now - 3 * DAY, "click", "bot"))
    await store.record_event(hit(old[CAROL], now - 2 * DAY, klass="proxy", inferred=True))
    await assert_chart_matches_events(store, start, end)
    honeypot = hit(new[BOB], now, "click", "bot", url="https://x.example/h", link_index=0)
    assert len(await store.record_hit(honeypot, relabel_client=True)) >= 1  # relabels bob's
    assert await assert_relabelled(store)
    await assert_chart_matches_events(store, start, end)
    erased = await store.erase_recipient(CAROL)
    assert erased["events"] > 0
    await assert_chart_matches_events(store, start, end)
    purged = await store.purge_older_than(now - 2.5 * DAY)  # old events, the old message
    assert purged["events"] > 0 and purged["messages"] == 1
    await assert_chart_matches_events(store, start, end)


async def assert_relabelled(store: Store) -> bool:
    return any("was:human" in e.reasons for e in await all_events(store))


async def test_other_windows_and_one_message_still_count_events(store: Store) -> None:
    now = time.time()
    copies = await delivered(store, now)
    await store.record_event(hit(copies[BOB], now - 10))
    await store.record_event(hit(copies[CAROL], now - 20, "click"))
    unaligned = await store.event_histogram(now - 90, now + 10, 50)
    assert sorted((b.kind, b.count) for b in unaligned) == [("click", 1), ("open", 1)]
    mine = await store.event_histogram(
        now // HOUR * HOUR - HOUR, now // HOUR * HOUR + HOUR, HOUR, copies[BOB].message_id
    )
    assert sum(b.count for b in mine) == 2
