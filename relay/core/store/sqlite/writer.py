"""A process's writer: every write of the process goes through one queue, group-committed.

Callers submit a function of a sqlite3 connection. The writer takes whatever is
queued (up to MAX_BATCH), runs it in the connection's thread inside ONE
transaction, each op inside its own SAVEPOINT so one failing op is rolled back
alone, commits (fsync'd, synchronous=FULL) and only then resolves the callers'
futures. So an acknowledged write is durable, and a thousand concurrent events
cost a handful of fsyncs instead of a thousand. The queue and its batches are
both engines' (store/batching.py); this module runs a batch on SQLite.

Every sqlite3 call releases the GIL, and this thread must then win it back
from the event loop (up to the 5 ms switch interval). So consecutive ops that
carry the same Bulk runner (events, mostly) go to SQLite as ONE statement:
a batch of fifty pixel hits costs a few GIL hand-offs instead of a hundred.

Other processes write the same file through writers of their own (see
sqlite/store.py); a batch begins when SQLite's write lock is free (begin_write).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from relay.core.store.base import StoreUnavailable
from relay.core.store.batching import BatchWriter, Pending, WriteItem, bulk_groups, settle

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[sqlite3.Connection], Any]

BUSY_SECONDS = 5.0  # how long a write waits for another process's transaction
BUSY_RETRY = 0.0005


class GroupWriter(BatchWriter):
    """Owns the write connection: one task commits the batches (store/batching.py)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        super().__init__()
        self._conn = conn

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._serve(self._commit_batch), name="store-writer")]

    async def _commit_batch(self, batch: list[Pending]) -> None:
        items = [p.item for p in batch]
        try:
            results = await run_in_thread(self._conn, run_batch, items)
            self.transactions += 1
        except Exception as exc:
            log.exception("store: a write batch of %d failed to commit", len(batch))
            failure = StoreUnavailable(f"could not commit: {exc}")
            results = [(False, failure)] * len(batch)
        settle(batch, results)


def run_batch(conn: sqlite3.Connection, items: list[WriteItem]) -> list[tuple[bool, Any]]:
    """In the connection's thread: one transaction, a SAVEPOINT per multi-statement op."""
    begin_write(conn)
    try:
        results = run_items(conn, items)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def begin_write(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE, tried again every BUSY_RETRY seconds while another process writes.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20 ms and more between tries: with
    several processes writing one file (delivery workers, the event writer) those sleeps,
    not the writes, set the pace (measured: two delivery workers drained no faster than
    one). The connection's busy timeout is off for this statement only.
    """
    deadline = time.monotonic() + BUSY_SECONDS
    conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(BUSY_RETRY)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY or "locked" in str(exc)


def run_items(conn: sqlite3.Connection, items: list[WriteItem]) -> list[tuple[bool, Any]]:
    """Inside an open transaction: each item's (ok, result or error), in order."""
    results: list[tuple[bool, Any]] = []
    for group in bulk_groups(items):
        outcomes = _run_bulk(conn, group) if len(group) > 1 else None
        if outcomes is None:
            outcomes = [_run_item(conn, item) for item in group]
        results.extend(outcomes)
    return results


def _run_bulk(conn: sqlite3.Connection, group: list[WriteItem]) -> list[tuple[bool, Any]] | None:
    """The group as one statement; None when it failed (nothing was written)."""
    bulks = [item.bulk for item in group if item.bulk is not None]
    try:
        values = bulks[0].run(conn, [bulk.item for bulk in bulks])
    except Exception as exc:  # one bad item: the caller runs them one by one
        log.debug("store: a bulk write of %d fell back to single writes: %r", len(group), exc)
        return None
    if len(values) != len(group):
        raise RuntimeError(f"bulk write returned {len(values)} results for {len(group)}")
    return [(True, value) for value in values]


def _run_item(conn: sqlite3.Connection, item: WriteItem) -> tuple[bool, Any]:
    if item.single_statement:
        return _run_one(conn, item.op)
    conn.execute("SAVEPOINT op")
    outcome = _run_one(conn, item.op)
    if not outcome[0]:
        conn.execute("ROLLBACK TO op")
    conn.execute("RELEASE op")
    return outcome


def _run_one(conn: sqlite3.Connection, op: WriteOp) -> tuple[bool, Any]:
    try:
        return True, op(conn)
    except Exception as exc:
        return False, translate_error(exc)


def translate_error(exc: Exception) -> Exception:
    """Callers never see sqlite3: bad input is a ValueError, the rest StoreUnavailable."""
    if isinstance(exc, sqlite3.IntegrityError):
        return ValueError(f"refused by the store: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(str(exc))
    return exc


async def run_in_thread(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run fn(sqlite3_connection, *args) in aiosqlite's worker thread for this connection.

    aiosqlite has no public API for this; `_execute` and `_conn` have been stable
    since 0.17. One thread hop for a whole batch or report instead of one per statement.
    """

    def call() -> tuple[bool, Any]:
        try:
            return True, fn(conn._conn, *args)
        except Exception as exc:  # boxed: anything _execute itself raises is the connection's
            return False, exc

    try:
        ok, value = await conn._execute(call)  # type: ignore[no-untyped-call]
    except Exception as exc:  # aiosqlite: "Connection closed", thread gone
        raise StoreUnavailable(f"the store connection is closed: {exc}") from exc
    if not ok:
        raise translate_error(value) from value
    result: T = value
    return result
