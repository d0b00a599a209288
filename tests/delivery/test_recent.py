"""RecentMessages over the real store: one read per message, bounded, never stale for long."""

from __future__ import annotations

import asyncio
from typing import Any

from delivery.test_worker import HTML, spool

from relay.core.models import Message
from relay.core.store import Store, StoreUnavailable
from relay.delivery.recent import RecentMessages


class CountingStore:
    """The real store, counting the reads RecentMessages makes through it."""

    def __init__(self, real: Store) -> None:
        self.store = real
        self.reads: list[str] = []

    async def load_message(self, message_id: str) -> tuple[Message, bytes] | None:
        self.reads.append(message_id)
        return await self.store.load_message(message_id)


def recent(counting: CountingStore, **kwargs: Any) -> RecentMessages:
    return RecentMessages(counting, **kwargs)  # type: ignore[arg-type]


async def test_copies_started_together_share_one_read(store: Store) -> None:
    copies = await spool(store, ["b@example.net", "c@example.net", "d@example.net"])
    counting = CountingStore(store)
    cache = recent(counting)
    results = await asyncio.gather(*(cache.get(c.message_id) for c in copies))
    assert counting.reads == [copies[0].message_id]
    for loaded in results:
        assert loaded is not None
        message, raw = loaded
        assert message.id == copies[0].message_id and raw.endswith(HTML)


async def test_an_unknown_message_is_none_and_not_remembered(store: Store) -> None:
    counting = CountingStore(store)
    cache = recent(counting)
    assert await cache.get("no-such-message") is None
    assert await cache.get("no-such-message") is None
    assert counting.reads == ["no-such-message", "no-such-message"]


async def test_entries_expire_and_the_byte_bound_holds(store: Store) -> None:
    [first] = await spool(store, ["b@example.net"])
    [second] = await spool(store, ["c@example.net"])
    counting = CountingStore(store)
    expiring = recent(counting, ttl=0.0)
    await expiring.get(first.message_id)
    await expiring.get(first.message_id)
    assert counting.reads == [first.message_id] * 2
    counting.reads.clear()
    small = recent(counting, max_bytes=len(HTML) + 10)  # room for one message
    for message_id in (first.message_id, second.message_id, second.message_id):
        await small.get(message_id)
    await small.get(first.message_id)
    assert counting.reads == [first.message_id, second.message_id, first.message_id]


async def test_a_prefetched_message_is_read_once_before_a_copy_asks(store: Store) -> None:
    """The worker prefetches the messages of the copies it claims: the copy that starts
    later finds its message read."""
    [copy] = await spool(store, ["b@example.net"])
    counting = CountingStore(store)
    cache = recent(counting)
    cache.prefetch(copy.message_id)
    cache.prefetch(copy.message_id)  # a second copy of the same message: no second read
    for _ in range(100):
        if counting.reads:
            break
        await asyncio.sleep(0.01)
    assert counting.reads == [copy.message_id]
    loaded = await cache.get(copy.message_id)
    assert loaded is not None and loaded[1].endswith(HTML)
    assert counting.reads == [copy.message_id]


class FailingOnce(CountingStore):
    """The store down for the first read (a fault injected: the real store answers after)."""

    async def load_message(self, message_id: str) -> tuple[Message, bytes] | None:
        if not self.reads:
            self.reads.append(message_id)
            raise StoreUnavailable("down for a moment")
        return await super().load_message(message_id)


async def test_a_prefetch_that_failed_is_read_again_when_a_copy_asks(store: Store) -> None:
    [copy] = await spool(store, ["b@example.net"])
    failing = FailingOnce(store)
    cache = recent(failing)
    cache.prefetch(copy.message_id)
    for _ in range(100):
        if failing.reads:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # the failed read is done
    loaded = await cache.get(copy.message_id)
    assert loaded is not None and loaded[0].id == copy.message_id
    assert failing.reads == [copy.message_id, copy.message_id]
