"""Group commit on PostgreSQL: a connection in a thread (LANES), a transaction per batch.

The same idea as the SQLite writer (relay/core/store/sqlite/writer.py):
callers submit a function of a connection; the writer takes whatever is
queued (up to MAX_BATCH), runs it in a connection's thread inside ONE
transaction, where one failing op is rolled back alone (below), COMMITs
(synchronous_commit on: the commit is on the server's disk when it returns)
and only then resolves the callers' futures. A thousand concurrent events
cost a handful of commits, and nothing is acknowledged before it is durable.

Unlike SQLite, a failed statement aborts a PostgreSQL transaction until it
is rolled back, and a SAVEPOINT costs two round trips to the server. So a
batch runs its ops plainly first (consecutive ops with the same Bulk runner
as one statement); only when one of them fails is the transaction rolled
back and the batch run again with a SAVEPOINT per op, where the failing op
fails alone (single_statement is ignored).

The writer can keep several connections (lanes), each with its thread, that take
batches from the one queue in turn, so that while one waits for its commit the next
batch already runs. That paid while an outcome cost its batch a round trip of its
own; since a batch of outcomes costs one (queue.record_outcome_unread), one lane
does better: lanes held each other up on the locks of the messages whose copies they
shared, and every thread hop costs the event loop (measured on 2 cores:
relay_throughput on PostgreSQL 268 msgs/s with one lane, 220 with two, 209 with
three; drain.py 412 against 343 copies/s with one worker). Ops that must follow
each other are awaited by their callers, so no order is lost.

Other processes write to the same database at the same time. A batch that
fails with a deadlock or a serialization failure is rolled back and run
again op by op, each op in a transaction of its own. A lost connection fails
the batch (StoreUnavailable) and the next batch connects again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.core.store.base import StoreUnavailable
from relay.core.store.batching import BatchWriter, Pending, WriteItem, bulk_groups, settle
from relay.core.store.postgres.connection import Connection, is_retryable, translate_error
from relay.core.store.sql.dialect import Unconfirmed

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[Any], Any]
LANES = 1  # write connections per process (see above)


class _Retry(Exception):
    """A deadlock or serialization failure inside the batch: run it again, op by op."""


class _Mismatch(RuntimeError):
    """A Bulk runner returned a result count other than its group's (a bug)."""


class _Lane:
    """One write connection and the thread that uses it."""

    def __init__(self, connect: Callable[[], Connection], number: int) -> None:
        self._connect = connect
        self.conn: Connection | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-writer-{number}")

    def connection(self) -> Connection:
        """In the lane's thread: the connection, made again if the last one broke."""
        if self.conn is None or not self.conn.usable:
            if self.conn is not None:
                log.warning("store: a write connection was lost; connecting again")
                self.disconnect()
            self.conn = self._connect()
        return self.conn

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class PostgresWriter(BatchWriter):
    """Owns the write connections: a task per lane commits the batches (store/batching.py)."""

    def __init__(self, connect: Callable[[], Connection], lanes: int = LANES) -> None:
        super().__init__()
        self._lanes = [_Lane(connect, n) for n in range(max(1, lanes))]

    async def call(self, fn: Callable[[Connection], T]) -> T:
        """Run fn(connection) on the first lane, outside any batch (opening, schema)."""
        lane = self._lanes[0]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(lane.thread, lambda: fn(lane.connection()))

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(
                self._serve(functools.partial(self._commit_batch, lane=lane)), name="store-writer"
            )
            for lane in self._lanes
        ]

    async def close(self) -> None:
        """Let queued writes finish, stop the writer tasks, close the connections."""
        if self._closed:
            return
        await super().close()
        loop = asyncio.get_running_loop()
        for lane in self._lanes:
            await loop.run_in_executor(lane.thread, lane.disconnect)
            lane.thread.shutdown(wait=False)

    async def _commit_batch(self, batch: list[Pending], lane: _Lane) -> None:
        items = [p.item for p in batch]
        loop = asyncio.get_running_loop()
        try:
            results, commits = await loop.run_in_executor(lane.thread, self._run_batch, items, lane)
            self.transactions += commits
        except Exception as exc:
            log.warning("store: a write batch of %d failed: %s", len(batch), exc)
            failure = translate_error(exc)
            if not isinstance(failure, StoreUnavailable):
                failure = StoreUnavailable(f"could not commit: {exc}")
            results = [(False, failure)] * len(batch)
        settle(batch, results)

    def _run_batch(self, items: list[WriteItem], lane: _Lane) -> tuple[list[tuple[bool, Any]], int]:
        """In the lane's thread: (each item's outcome, commits made)."""
        return commit_items(lane.connection(), items)


def commit_items(conn: Connection, items: list[WriteItem]) -> tuple[list[tuple[bool, Any]], int]:
    """(each item's outcome, commits made): one transaction for the batch, or, after a
    deadlock or serialization failure, one per op."""
    try:
        return run_batch(conn, items), 1
    except _Retry as exc:
        log.info("store: a write batch of %d met %s; running it op by op", len(items), exc)
    except BaseException:
        conn.rollback_if_open()
        raise
    return [run_alone(conn, item) for item in items], len(items)


def run_batch(conn: Connection, items: list[WriteItem]) -> list[tuple[bool, Any]]:
    """One transaction; raises _Retry on a deadlock or serialization failure, having
    rolled back.

    The ops run plainly first (no SAVEPOINT: two round trips fewer per op), in
    pipeline mode: a statement whose result no op reads costs no round trip of its
    own, so a batch waits for the server about once per result read, and once for
    BEGIN ... COMMIT. Should one op fail, that transaction is rolled back and the
    batch runs again, out of pipeline mode, with a SAVEPOINT per op (or per bulk
    group), so the failing op fails alone, as on SQLite."""
    try:
        results = run_plainly(conn, items)
        if results is None:
            conn.execute("BEGIN")
            results = run_items(conn, items)
            conn.execute("COMMIT")
    except Exception as exc:
        conn.rollback_if_open()
        if is_retryable(exc):
            raise _Retry(str(exc).strip()) from exc
        raise
    return results


def run_plainly(conn: Connection, items: list[WriteItem]) -> list[tuple[bool, Any]] | None:
    """BEGIN, every op without a SAVEPOINT, COMMIT, in pipeline mode: their results, or
    None when one failed (nothing of the batch is then stored; it is rolled back).

    COMMIT goes out right behind the last op's statements, so a batch whose ops read
    everything they need on the way ends with one round trip. Should one of those last
    statements fail, the server skips the COMMIT and the transaction is left aborted:
    that tells an op's failure (run the batch again, op by op) from the COMMIT's own."""
    results: list[tuple[bool, Any]] = []
    shared: Any = conn  # the shared SQL is typed for sqlite3; the adapter stands in
    failure: Exception | None = None
    try:
        with conn.pipelined():
            try:
                conn.execute("BEGIN")
                for group in bulk_groups(items):
                    if len(group) == 1:
                        results.append((True, group[0].op(shared)))
                        continue
                    bulks = [item.bulk for item in group if item.bulk is not None]
                    values = bulks[0].run(shared, [bulk.item for bulk in bulks])
                    if len(values) != len(group):
                        raise _Mismatch(f"bulk write returned {len(values)} for {len(group)}")
                    results.extend((True, value) for value in values)
                conn.execute("COMMIT")  # leaving pipeline mode below syncs: its round trip
            except Exception as exc:
                failure = exc
    except Exception as exc:  # at the sync: an op's unread statement failed, or the COMMIT
        if failure is None:
            failure = exc
    if failure is None:
        return [_confirmed(result) for result in results]
    if is_retryable(failure) or not conn.usable or isinstance(failure, _Mismatch):
        raise failure
    if not conn.in_transaction:  # the COMMIT itself failed: nothing of the batch is stored
        raise failure
    log.debug("store: a write of a batch of %d failed: %r", len(items), failure)
    conn.execute("ROLLBACK")
    return None


def _confirmed(result: tuple[bool, Any]) -> tuple[bool, Any]:
    """An op's outcome once its batch's statements came back (sql/dialect.Unconfirmed)."""
    ok, value = result
    if not (ok and isinstance(value, Unconfirmed)):
        return result
    try:
        return True, value.confirm()
    except Exception as exc:
        return False, translate_error(exc)


def run_items(conn: Connection, items: list[WriteItem]) -> list[tuple[bool, Any]]:
    """Inside an open transaction: each item's (ok, result or error), in order."""
    results: list[tuple[bool, Any]] = []
    for group in bulk_groups(items):
        outcomes = _run_bulk(conn, group) if len(group) > 1 else None
        if outcomes is None:
            outcomes = [_in_savepoint(conn, item.op) for item in group]
        results.extend(outcomes)
    return results


def _run_bulk(conn: Connection, group: list[WriteItem]) -> list[tuple[bool, Any]] | None:
    """The group as one statement; None when it failed (rolled back to before it)."""
    bulks = [item.bulk for item in group if item.bulk is not None]
    run = bulks[0].run
    ok, values = _in_savepoint(conn, lambda c: run(c, [bulk.item for bulk in bulks]))
    if not ok:
        log.debug("store: a bulk write of %d fell back to single writes: %r", len(group), values)
        return None
    if len(values) != len(group):
        raise RuntimeError(f"bulk write returned {len(values)} results for {len(group)}")
    return [(True, value) for value in values]


def _in_savepoint(conn: Connection, op: WriteOp) -> tuple[bool, Any]:
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except Exception as exc:
        if is_retryable(exc):
            raise
        if not conn.usable:
            raise
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        return False, translate_error(exc)
    conn.execute("RELEASE op")
    return True, result


def run_alone(conn: Connection, item: WriteItem) -> tuple[bool, Any]:
    """One op in a transaction of its own (the retry of a batch that deadlocked)."""
    try:
        conn.execute("BEGIN")
        op: WriteOp = item.op  # the shared SQL is typed for sqlite3; the adapter stands in
        result = op(conn)
        conn.execute("COMMIT")
    except Exception as exc:
        conn.rollback_if_open()
        return False, translate_error(exc)
    return True, result
