"""The event writer process (store/sqlite/hitproc.py) through its client
(store/sqlite/hitclient.py).

A real child process on a real socketpair, writing the test's SQLite file:
hits are acknowledged only once committed, a killed process costs no
acknowledged hit, the HTTP side falls back to the in-process store and
restarts the process, and a held write lock costs time, never the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.messages import BOB, spool_one

from relay.core.models import Event
from relay.core.store.sqlite import SQLiteStore
from relay.core.store.sqlite.hitclient import HitWriter
from relay.core.store.sqlite.hitproc import acknowledgement, event_fields, event_from_fields

GUARD = 20.0


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    """The event writer process is the SQLite store's own: these tests run on SQLite only."""
    return sqlite_store


@pytest.fixture
async def copy(store: SQLiteStore) -> tuple[int, str]:
    message_id, copy_id = await spool_one(store)
    return copy_id, message_id


@pytest.fixture
async def writer(store: SQLiteStore) -> AsyncIterator[HitWriter]:
    hits = HitWriter(store, path=store.path, timeout=5.0, restart_delay=0.05)
    await hits.start()
    yield hits
    await hits.close()


def an_open(copy: tuple[int, str], n: int = 0) -> Event:
    return Event("open", copy[0], copy[1], "stale@x", time.time(), f"192.0.2.{n % 250}", "UA")


async def test_hits_are_committed_by_a_process_of_their_own(
    store: SQLiteStore, copy: tuple[int, str], writer: HitWriter
) -> None:
    assert writer.pid is not None and writer.pid != os.getpid()
    async with asyncio.timeout(GUARD):
        results = await asyncio.gather(*(writer.record_hit(an_open(copy, n)) for n in range(200)))
    ids = [events[0].id or 0 for events in results]
    assert all(events[0].recipient == BOB for events in results)  # the copy's, not the cache's
    stored = await store.list_events(limit=1000)
    assert sorted(e.id or 0 for e in stored) == sorted(ids)
    assert store.transactions <= 2  # the spool and its copy; the process wrote the events
    with sqlite3.connect(store.path) as other:  # durable for any reader, now
        assert other.execute("SELECT count(*) FROM events").fetchone() == (200,)


async def test_clicks_relabelling_and_refusals_go_through_it_too(
    store: SQLiteStore, copy: tuple[int, str], writer: HitWriter
) -> None:
    click = Event("click", copy[0], copy[1], None, time.time(), "192.0.2.1", "UA", url="https://x/")
    recorded = await writer.record_hit(click)
    assert [(e.kind, e.inferred) for e in recorded] == [("click", False), ("open", True)]
    relabelled = await writer.record_hit(click, relabel_client=True)
    assert relabelled[0].id is not None
    with pytest.raises(ValueError, match=r"no such copy|no copy"):
        await writer.record_hit(Event("open", 999_999, copy[1], None, time.time(), "", ""))
    assert writer.pid is not None  # a refused hit is the caller's error, not the process's


async def test_a_killed_process_loses_no_hit_and_comes_back(
    store: SQLiteStore, copy: tuple[int, str], writer: HitWriter
) -> None:
    first = writer.pid
    assert first is not None
    in_flight = [asyncio.create_task(writer.record_hit(an_open(copy, n))) for n in range(100)]
    await asyncio.sleep(0)  # queued, perhaps sent: the process dies with them in flight
    os.kill(first, signal.SIGKILL)
    async with asyncio.timeout(GUARD):
        answered = await asyncio.gather(*in_flight)
        fallback = await writer.record_hit(an_open(copy))  # the store, while it restarts
        while writer.pid in (None, first):  # noqa: ASYNC110 - the restart is polled
            await asyncio.sleep(0.02)
        again = await writer.record_hit(an_open(copy))
    assert writer.restarts >= 1
    stored = {e.id for e in await store.list_events(limit=1000)}
    for events in [*answered, fallback, again]:
        assert events[0].id in stored  # every answered hit is there
    assert len(stored) >= 102  # a hit committed just before the kill may be there twice


async def test_a_process_that_cannot_start_leaves_the_store_in_charge(
    store: SQLiteStore, copy: tuple[int, str], tmp_path: Path
) -> None:
    hits = HitWriter(store, path=str(tmp_path / "missing" / "relay.db"), restart_delay=30.0)
    await hits.start()
    try:
        assert hits.pid is None
        recorded = await hits.record_hit(an_open(copy))
        assert [e.id for e in await store.list_events()] == [recorded[0].id]
    finally:
        await hits.close()


async def test_a_held_write_lock_costs_the_bound_not_the_hit(
    store: SQLiteStore, copy: tuple[int, str]
) -> None:
    hits = HitWriter(store, path=store.path, timeout=0.5)
    await hits.start()
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await hits.record_hit(an_open(copy))
        assert 0.4 < time.monotonic() - started < 3.0
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    async with asyncio.timeout(GUARD):
        while not await store.list_events():  # noqa: ASYNC110 - it waited for the lock
            await asyncio.sleep(0.05)
        await hits.close()
    assert len(await store.list_events()) == 1


async def test_close_commits_what_was_sent_then_ends_the_process(
    store: SQLiteStore, copy: tuple[int, str]
) -> None:
    hits = HitWriter(store, path=store.path)
    await hits.start()
    pid = hits.pid
    tasks = [asyncio.create_task(hits.record_hit(an_open(copy, n))) for n in range(50)]
    await asyncio.sleep(0)
    async with asyncio.timeout(GUARD):
        await hits.close()
        await asyncio.gather(*tasks)
    assert len(await store.list_events()) == 50
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped


async def test_a_hit_stored_as_sent_comes_back_whole_from_its_id_alone(
    store: SQLiteStore, copy: tuple[int, str], writer: HitWriter
) -> None:
    sent = dataclasses.replace(an_open(copy), recipient=BOB, extra={"ua_family": "Thunderbird"})
    [recorded] = await writer.record_hit(sent)
    assert recorded is not sent and sent.id is None  # the caller's event is left alone
    assert recorded == dataclasses.replace(sent, id=recorded.id)
    assert await store.list_events() == [recorded]


def test_only_a_hit_stored_as_sent_is_acknowledged_by_its_id() -> None:
    sent = dataclasses.replace(an_open((1, "m1")), recipient=BOB)
    assert event_from_fields(event_fields(sent)) == sent
    assert acknowledgement(sent, [dataclasses.replace(sent, id=7)]) == 7
    erased = [dataclasses.replace(sent, recipient=None, id=7)]  # erased since it was cached
    assert acknowledgement(sent, erased) == erased
    inferred = [dataclasses.replace(sent, id=7), dataclasses.replace(sent, id=8, inferred=True)]
    assert acknowledgement(sent, inferred) == inferred


async def test_a_busy_turn_sends_full_frames_at_once_and_the_rest_at_its_end(
    store: SQLiteStore, copy: tuple[int, str]
) -> None:
    hits = HitWriter(store, path=store.path, frame_hits=16)
    await hits.start()
    try:
        tasks = [asyncio.create_task(hits.record_hit(an_open(copy, n))) for n in range(40)]
        await asyncio.sleep(0)  # every task has run up to its wait: one turn
        assert hits.frames == 2  # the writer already has the first 32
        async with asyncio.timeout(GUARD):
            results = await asyncio.gather(*tasks)
        assert hits.frames == 3
    finally:
        await hits.close()
    stored = {e.id for e in await store.list_events(limit=100)}
    assert stored == {events[0].id for events in results} and len(stored) == 40
