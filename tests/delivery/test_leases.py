"""Several workers share one queue by leases (store/sql/leases.py, delivery/worker.py).

Each worker here is what a delivery process runs, on its own store connection
to the same file, as separate processes would be: every copy goes out once,
a dead worker's copies are taken over when its leases end, a live worker's
long send keeps its lease.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from delivery.test_worker import CODEC, relay_config, spool
from delivery.upstreams import ScriptedHandler, SinkFactory
from support.processes import free_port
from support.stores import open_sqlite

from relay.core.store import Store
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker


async def wait_until_delivered(store: Store, n: int) -> None:
    async with asyncio.timeout(20):
        while True:
            if (await store.queue_depth())["delivered"] >= n:
                return
            await asyncio.sleep(0.05)


def worker(store: Store, port: int, lease: float = 60.0, **upstream: Any) -> DeliveryWorker:
    config = relay_config(f"smtp://127.0.0.1:{port}", **upstream)
    w = DeliveryWorker(config, store, CODEC, open_upstream(config.upstream, helo_name="t"))
    w.lease = lease
    return w


async def test_two_workers_on_one_store_send_each_copy_once(
    tmp_path: Path, make_sink: SinkFactory
) -> None:
    handler, port = make_sink()
    stores = [await open_sqlite(tmp_path / "relay.db") for _ in range(2)]
    rcpts = [f"r{i}@example.net" for i in range(60)]
    await spool(stores[0], rcpts)
    workers = [worker(s, port, max_connections=3) for s in stores]
    for w in workers:
        await w.start()
    try:
        await wait_until_delivered(stores[0], len(rcpts))
        await asyncio.sleep(0.3)  # room for a second send of any copy
    finally:
        for w in workers:
            await w.stop()
        for s in stores:
            await s.close()
    sent = sorted(m.rcpt_tos[0] for m in handler.messages)
    assert sent == sorted(rcpts)  # all, and each once
    assert len({m.session for m in handler.messages}) >= 2  # both workers took some


async def test_a_dead_workers_copy_is_taken_over_when_its_lease_ends(
    store: Store, make_sink: SinkFactory
) -> None:
    handler, port = make_sink()
    [copy] = await spool(store, ["b@example.net"])
    # A worker took it and died: nothing renews its lease, nothing records an outcome.
    assert [c.id for c in await store.claim_copies("dead/1/x", time.time(), 1.0, 10)] == [copy.id]
    alive = worker(store, port)
    started = time.monotonic()
    await alive.start()
    try:
        await wait_until_delivered(store, 1)
    finally:
        await alive.stop()
    assert time.monotonic() - started >= 0.5  # not before the dead worker's lease ended
    assert [m.rcpt_tos for m in handler.messages] == [["b@example.net"]]
    assert (await store.get_copy(copy.id)).attempts == 1  # type: ignore[union-attr]


class SlowData(ScriptedHandler):
    """An upstream that takes its time over DATA (a live worker's long send)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_data.set()
        await asyncio.sleep(1.5)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_sink() -> Iterator[tuple[SlowData, int]]:
    handler, port = SlowData(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield handler, port
    controller.stop()


async def test_a_live_workers_long_send_keeps_its_lease(
    tmp_path: Path, make_sink: SinkFactory, slow_sink: tuple[SlowData, int]
) -> None:
    slow, slow_port = slow_sink
    other, port = make_sink()
    first, second = [await open_sqlite(tmp_path / "relay.db") for _ in range(2)]
    try:
        await spool(first, ["b@example.net"])
        a = worker(first, slow_port, lease=0.6)  # renewed every 0.2 s while it sends
        await a.start()
        async with asyncio.timeout(5):
            await asyncio.to_thread(slow.in_data.wait)
        b = worker(second, port, lease=0.6)  # would take it were the lease let go
        await b.start()
        await wait_until_delivered(first, 1)
        await asyncio.sleep(1.0)  # past the lease
        await b.stop()
        await a.stop()
    finally:
        await first.close()
        await second.close()
    assert [m.rcpt_tos for m in slow.messages] == [["b@example.net"]]
    assert other.messages == []


class SlowFor(ScriptedHandler):
    """DATA for the listed recipients takes 1.5 s; for others it is answered at once."""

    def __init__(self, slow: set[str]) -> None:
        super().__init__()
        self.slow = slow

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.slow & set(envelope.rcpt_tos):
            await asyncio.sleep(1.5)
        return await super().handle_DATA(server, session, envelope)


async def test_a_stopping_worker_gives_back_the_copies_it_took_but_did_not_start(
    store: Store,
) -> None:
    rcpts = [f"r{i}@example.net" for i in range(5)]
    handler, port = SlowFor(set(rcpts[1:])), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        copies = await spool(store, rcpts)
        w = worker(store, port, max_connections=2)  # a claim takes two copies at a time
        await w.start()
        # r0 and r1 go out, and a claim beside them takes r2 and r3; r0 is answered at
        # once, so r2 starts in its slot and r3 waits for one (r4 may be taken too).
        await wait_until_delivered(store, 1)
        await asyncio.sleep(0.2)
        await w.stop()  # r1 and r2 finish; r3 is given back, not left to its lease
    finally:
        controller.stop()
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == rcpts[:3]
    left = await store.claim_copies("other/1/x", time.time(), 60.0, 10)
    assert [c.id for c in left] == [c.id for c in copies[3:]]  # r3 at once, r4 untouched


async def test_the_next_copies_are_taken_while_the_last_ones_are_sent(store: Store) -> None:
    """A claim runs beside the sends (its copies' messages read meanwhile), so a freed
    connection never waits for one: with 2 connections busy, 2 more copies are taken."""
    rcpts = [f"r{i}@example.net" for i in range(6)]
    handler, port = SlowFor(set(rcpts)), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        copies = await spool(store, rcpts)
        w = worker(store, port, max_connections=2)
        await w.start()
        await asyncio.sleep(0.7)  # r0 and r1 are being sent (1.5 s each)
        assert handler.messages == []
        left = await store.claim_copies("other/1/x", time.time(), 60.0, 10)
        assert [c.id for c in left] == [c.id for c in copies[4:]]  # r2, r3 were taken
        await store.release_copies("other/1/x", [c.id for c in left])
        await w.stop()
    finally:
        controller.stop()
