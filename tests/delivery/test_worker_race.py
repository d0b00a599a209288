"""A due-copies read that predates a copy's outcome must not deliver that copy again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from delivery.test_worker import CODEC, relay_config, spool
from delivery.upstreams import SinkFactory

from relay.core.config import StoreConfig
from relay.core.models import Copy
from relay.core.store import Store, open_store
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker


class SlowReads:
    """The real store, but once armed, due_copies answers only after `finished` is delivered.

    That is the race on a busy machine: the read runs while the copy is in flight
    and its answer arrives after the copy's outcome was recorded.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.finished: Copy | None = None
        self.stale_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def due_copies(self, now: float, limit: int) -> list[Copy]:
        rows = await self._store.due_copies(now, limit)
        target = self.finished
        if target is not None and any(c.id == target.id for c in rows):
            async with asyncio.timeout(10):
                while (await self._store.get_copy(target.id)).state != "delivered":  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # the copy's task has ended and left the in-flight set
            self.stale_reads += 1
        return rows


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(StoreConfig(path=str(tmp_path / "relay.db")))
    await opened.open()
    yield opened
    await opened.close()


async def test_a_copy_finished_during_a_read_is_not_delivered_twice(
    store: Store, make_sink: SinkFactory
) -> None:
    handler, port = make_sink()
    slow = SlowReads(store)
    config = relay_config(f"smtp://127.0.0.1:{port}")
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    worker = DeliveryWorker(config, slow, CODEC, upstream)  # type: ignore[arg-type]
    [first] = await spool(store, ["b@example.net"])
    slow.finished = first  # every read that still lists it answers late
    await worker.start()
    [second] = await spool(store, ["c@example.net"])
    worker.wake()  # a read while the first copy is (or was) in flight
    async with asyncio.timeout(15):
        while len(handler.messages) < 2 or slow.stale_reads < 1:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # room for a second delivery, were one started
    await worker.stop()
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == ["b@example.net", "c@example.net"]
    assert (await store.get_copy(first.id)).attempts == 1  # type: ignore[union-attr]
    assert (await store.get_copy(second.id)).attempts == 1  # type: ignore[union-attr]
