"""Multi-row event writes: concurrent hits share one statement and keep every guarantee."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from support.messages import BOB, CAROL, new_message
from support.stores import AnyStore, Backend

from relay.core.models import CopySpec, Event
from relay.core.store.batching import MAX_BULK, Bulk, WriteItem, bulk_groups

T0 = 1_700_000_000.0


def an_open(copy_id: int, message_id: str, at: float, recipient: str | None = "stale@x") -> Event:
    return Event("open", copy_id, message_id, recipient, at, "192.0.2.7", "Thunderbird/115")


async def spool_two(store: AnyStore) -> tuple[str, int, int]:
    """A per-recipient copy for Bob and a shared copy (recipient "someone")."""
    message = new_message(received_at=T0)
    message_id = await store.spool(message, [CopySpec(BOB, (BOB,)), CopySpec(None, (BOB, CAROL))])
    bob, shared = sorted(c.id for c in await store.due_copies(T0 + 1, 10))
    return message_id, bob, shared


async def test_concurrent_hits_share_one_commit_and_keep_their_own_rows(
    store: AnyStore,
) -> None:
    message_id, bob, shared = await spool_two(store)
    before = store.transactions
    hits = [an_open(bob if i % 3 else shared, message_id, T0 + i) for i in range(120)]
    results = await asyncio.gather(*(store.record_hit(hit) for hit in hits))
    assert store.transactions - before <= 2  # the first hit may commit alone
    stored = {e.id: e for e in await store.list_events(limit=1000)}
    assert len(stored) == 120
    for hit, [event] in zip(hits, results, strict=True):
        assert event.id is not None
        row = stored[event.id]  # the id handed back is the row written for this very hit
        assert (row.at, row.copy_id) == (hit.at, hit.copy_id)
        # the recipient is the copy's own, not what the caller remembered
        assert row.recipient == event.recipient == (BOB if hit.copy_id == bob else None)


async def test_a_bad_hit_fails_alone_in_a_bulk(store: AnyStore) -> None:
    message_id, bob, _ = await spool_two(store)
    before = store.transactions
    hits = [an_open(bob, message_id, T0 + i) for i in range(10)]
    hits[4] = an_open(424242, message_id, T0 + 4)  # no such copy
    results = await asyncio.gather(*(store.record_hit(hit) for hit in hits), return_exceptions=True)
    assert store.transactions - before <= 2
    assert isinstance(results[4], ValueError)
    good = [r for i, r in enumerate(results) if i != 4]
    assert all(isinstance(r, list) for r in good)
    stored = await store.list_events(limit=100)
    assert sorted(e.at for e in stored) == [T0 + i for i in range(10) if i != 4]


async def test_record_event_ids_match_their_rows(store: AnyStore, backend: Backend) -> None:
    message_id, bob, _ = await spool_two(store)
    events = [an_open(bob, message_id, T0 + i, BOB) for i in range(300)]
    ids = await asyncio.gather(*(store.record_event(e) for e in events))
    rows = dict(backend.rows("SELECT id, at FROM events"))
    assert {i: rows[i] for i in ids} == {i: e.at for i, e in zip(ids, events, strict=True)}


async def test_events_and_other_writes_interleave_in_one_batch(store: AnyStore) -> None:
    message_id, bob, _ = await spool_two(store)
    results = await asyncio.gather(
        store.record_event(an_open(bob, message_id, T0 + 1, BOB)),
        store.record_event(an_open(bob, message_id, T0 + 2, BOB)),
        store.record_links(bob, ["https://example.com/"]),
        store.record_event(an_open(bob, message_id, T0 + 3, BOB)),
        store.record_links(777, ["https://x.example/"]),  # no such copy
        store.record_event(an_open(bob, message_id, T0 + 4, BOB)),
        return_exceptions=True,
    )
    assert isinstance(results[4], ValueError)
    ids = [results[i] for i in (0, 1, 3, 5)]
    assert [e.id for e in await store.list_events()] == ids


def _runner(conn: sqlite3.Connection, items: list[Any]) -> list[Any]:
    return items


def _other(conn: sqlite3.Connection, items: list[Any]) -> list[Any]:
    return items


def test_bulk_groups_are_consecutive_runs_of_one_runner() -> None:
    def item(run: Any) -> WriteItem:
        return WriteItem(lambda c: None, True, None if run is None else Bulk(run, 0))

    items = [item(_runner), item(_runner), item(None), item(_runner), item(_other), item(_other)]
    sizes = [len(g) for g in bulk_groups(items)]
    assert sizes == [2, 1, 1, 2]
    many = [item(_runner) for _ in range(MAX_BULK * 2 + 1)]
    assert [len(g) for g in bulk_groups(many)] == [MAX_BULK, MAX_BULK, 1]
