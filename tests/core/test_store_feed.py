"""Store.wait_for_events: how a live feed hears of events that another node recorded."""

from __future__ import annotations

import asyncio
import time

from support.stores import AnyStore, Backend

from relay.core.models import CopySpec, Event, NewMessage, TrackingDecision

A = "a@example.net"


async def a_copy(store: AnyStore) -> tuple[str, int]:
    msg = NewMessage(
        "s@example.com", (A,), b"Subject: s\r\n\r\nhi\r\n", time.time(), "127.0.0.1", None,
        "s@example.com", "s", "<s@example.com>", TrackingDecision(opens=True, clicks=True),
    )  # fmt: skip
    mid = await store.spool(msg, [CopySpec(A, (A,))])
    [copy] = await store.copies_of(mid)
    return mid, copy.id


async def test_a_waiter_hears_of_another_nodes_events(store: AnyStore, backend: Backend) -> None:
    mid, copy_id = await a_copy(store)
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
