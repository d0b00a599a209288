"""Store.wait_for_events: how a live feed hears of events that another node recorded."""

from __future__ import annotations

import asyncio
import time

from support.messages import spool_one
from support.stores import AnyStore, Backend

from relay.core.models import Event

A = "a@example.net"


async def test_a_waiter_hears_of_another_nodes_events(store: AnyStore, backend: Backend) -> None:
    mid, copy_id = await spool_one(store, A)
    other = await backend.open()  # another process, another node
    try:
        await store.wait_for_events(0.2)  # listening from here on (PostgreSQL)
        waiting = asyncio.create_task(store.wait_for_events(3.0))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        hit = Event("open", copy_id, mid, A, time.time(), "192.0.2.1", "Thunderbird/115",
                    "human", (), "", None)  # fmt: skip
        await other.record_hit(hit)
        await waiting
        took = time.monotonic() - started
    finally:
        await other.close()
    if backend.name == "postgres":
        assert took < 1.0  # NOTIFY at commit: at once
    else:
        assert took > 2.0  # nothing tells SQLite: the waiter polls
    assert [e.kind for e in await store.list_events()] == ["open"]
