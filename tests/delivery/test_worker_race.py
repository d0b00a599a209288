"""Copies whose outcomes are slow to commit: slots freed, nothing sent twice."""

from __future__ import annotations

import asyncio
from typing import Any

from delivery.test_worker import CODEC, relay_config, spool
from delivery.upstreams import SinkFactory

from relay.core.models import Copy
from relay.core.store import Store
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker


class HeldOutcomes:
    """The real store, but no outcome is written until the test says so (a slow commit)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def record_outcome(self, *args: Any, **kwargs: Any) -> None:
        await self.release.wait()
        await self._store.record_outcome(*args, **kwargs)


async def states(store: Store, copies: list[Copy]) -> list[str]:
    found = [await store.get_copy(c.id) for c in copies]
    return [c.state if c is not None else "missing" for c in found]


async def test_a_copy_whose_outcome_is_being_written_frees_its_slot(
    store: Store, make_sink: SinkFactory
) -> None:
    handler, port = make_sink()
    copies = await spool(store, ["b@example.net", "c@example.net"])
    held = HeldOutcomes(store)
    config = relay_config(f"smtp://127.0.0.1:{port}", max_connections=1)
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    worker = DeliveryWorker(config, held, CODEC, upstream)  # type: ignore[arg-type]
    await worker.start()
    async with asyncio.timeout(10):  # both sent while the first outcome is still unwritten
        while True:
            if len(handler.messages) >= 2:
                break
            await asyncio.sleep(0.02)
    assert await states(store, copies) == ["queued", "queued"]
    held.release.set()
    async with asyncio.timeout(10):
        while True:
            if await states(store, copies) == ["delivered", "delivered"]:
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # room for a second delivery of either, were one started
    await worker.stop()
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == ["b@example.net", "c@example.net"]


async def test_copies_sent_but_not_recorded_are_at_most_twice_the_connections(
    store: Store, make_sink: SinkFactory
) -> None:
    """What a crash could send again is bounded, however slow the commits are."""
    handler, port = make_sink()
    rcpts = [f"r{i}@example.net" for i in range(6)]
    copies = await spool(store, rcpts)
    held = HeldOutcomes(store)
    config = relay_config(f"smtp://127.0.0.1:{port}", max_connections=2)
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    worker = DeliveryWorker(config, held, CODEC, upstream)  # type: ignore[arg-type]
    await worker.start()
    async with asyncio.timeout(10):
        while True:
            if len(handler.messages) >= 4:
                break
            await asyncio.sleep(0.02)
    await asyncio.sleep(1.5)  # a poll and more: nothing else goes out while none is recorded
    assert len(handler.messages) == 4
    held.release.set()
    async with asyncio.timeout(10):
        while True:
            if set(await states(store, copies)) == {"delivered"}:
                break
            await asyncio.sleep(0.02)
    await worker.stop()
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == rcpts
