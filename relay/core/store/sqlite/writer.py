"""The single writer: every write goes through one queue and is group-committed.

Callers submit a function of a sqlite3 connection. The writer takes whatever is
queued (up to MAX_BATCH), runs it in the connection's thread inside ONE
transaction, each op inside its own SAVEPOINT so one failing op is rolled back
alone, commits (fsync'd, synchronous=FULL) and only then resolves the callers'
futures. So an acknowledged write is durable, and a thousand concurrent events
cost a handful of fsyncs instead of a thousand.

Every sqlite3 call releases the GIL, and this thread must then win it back
from the event loop (up to the 5 ms switch interval). So consecutive ops that
carry the same Bulk runner (events, mostly) go to SQLite as ONE statement:
a batch of fifty pixel hits costs a few GIL hand-offs instead of a hundred.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

from relay.core.store.base import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 500
MAX_QUEUED = 20_000  # beyond this, submitters wait: backpressure, not unbounded memory
BUSY_SECONDS = 5.0  # how long a write waits for another process's transaction
BUSY_RETRY = 0.0005
MAX_BULK = 200  # items per multi-row statement (bounds the statement's parameter count)


@dataclass(frozen=True)
class Bulk:
    """One op's share of a multi-row statement.

    ``run(conn, items)`` returns one result per item, in order, using exactly one
    data-changing statement, so it changes nothing when it raises; the group's
    ops then run one by one and a bad item fails alone, as without Bulk.
    """

    run: Callable[[sqlite3.Connection, list[Any]], list[Any]]
    item: Any


@dataclass(frozen=True)
class WriteItem:
    op: WriteOp
    single_statement: bool
    bulk: Bulk | None = None


@dataclass
class Pending:
    """A submitted write and the future its caller awaits."""

    item: WriteItem
    future: asyncio.Future[Any]


class GroupWriter:
    """Owns the write connection; `transactions` counts commits (tests compare it)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.transactions = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def submit(
        self,
        op: Callable[[sqlite3.Connection], T],
        single_statement: bool = False,
        bulk: Bulk | None = None,
    ) -> T:
        """Run op in the next batch; returns its result once the batch is committed.

        single_statement: op runs exactly one data-changing statement, which SQLite
        already undoes alone when it fails, so it needs no SAVEPOINT (a third faster).
        bulk: the same write as part of a multi-row statement (op is the fallback).
        """
        if self._closed:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(Pending(WriteItem(op, single_statement, bulk), future))
        return await future

    async def close(self) -> None:
        """Let queued writes finish, then stop the writer task."""
        if self._closed:
            return
        self._closed = True
        await self._queue.put(None)
        if self._task is not None:
            await self._task
        while not self._queue.empty():  # nothing should be left; never leave a caller hanging
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(StoreUnavailable("the store is closed"))

    async def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = await next_batch(self._queue)
            if batch:
                await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[Pending]) -> None:
        items = [p.item for p in batch]
        try:
            results = await run_in_thread(self._conn, run_batch, items)
            self.transactions += 1
        except Exception as exc:
            log.exception("store: a write batch of %d failed to commit", len(batch))
            failure = StoreUnavailable(f"could not commit: {exc}")
            results = [(False, failure)] * len(batch)
        for pending, (ok, value) in zip(batch, results, strict=True):
            if pending.future.done():  # the caller was cancelled; the write still happened
                continue
            if ok:
                pending.future.set_result(value)
            else:
                pending.future.set_exception(value)


async def next_batch(queue: asyncio.Queue[Pending | None]) -> tuple[list[Pending], bool]:
    """The writes waiting now (at least one, at most MAX_BATCH), and whether the stop mark
    (None) came: a writer takes whatever queued while it committed the last batch."""
    first = await queue.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < MAX_BATCH and not queue.empty():
        item = queue.get_nowait()
        if item is None:
            return batch, True
        batch.append(item)
    return batch, False


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


def bulk_groups(items: list[WriteItem]) -> list[list[WriteItem]]:
    """Runs of consecutive items with the same Bulk runner (at most MAX_BULK); others alone."""
    groups: list[list[WriteItem]] = []
    for item in items:
        last = groups[-1][-1] if groups else None
        if (
            item.bulk is not None
            and last is not None
            and last.bulk is not None
            and last.bulk.run is item.bulk.run
            and len(groups[-1]) < MAX_BULK
        ):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


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
