"""Group commit, the part both engines share: the queue of writes and its batches.

Callers submit a function of a connection; a writer task takes whatever is queued
(up to MAX_BATCH) and commits it as one transaction, then resolves the callers'
futures, so a thousand concurrent events cost a handful of commits. How a batch is
run and committed is each engine's own (sqlite/writer.py, postgres/writer.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from relay.core.store.base import StoreUnavailable

T = TypeVar("T")
WriteOp = Callable[[Any], Any]

MAX_BATCH = 500
MAX_QUEUED = 20_000  # beyond this, submitters wait: backpressure, not unbounded memory
MAX_BULK = 200  # items per multi-row statement (bounds the statement's parameter count)


@dataclass(frozen=True)
class Bulk:
    """One op's share of a multi-row statement.

    ``run(conn, items)`` returns one result per item, in order, using exactly one
    data-changing statement, so it changes nothing when it raises; the group's
    ops then run one by one and a bad item fails alone, as without Bulk.
    """

    run: Callable[[Any, list[Any]], list[Any]]
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


class BatchWriter:
    """The queue of writes and the tasks that commit it; `transactions` counts commits
    (tests compare it). Each engine's writer says how a batch is committed."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue(MAX_QUEUED)
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.transactions = 0

    async def submit(
        self,
        op: Callable[[Any], T],
        single_statement: bool = False,
        bulk: Bulk | None = None,
    ) -> T:
        """Run op in the next batch; returns its result once the batch is committed.

        single_statement: op runs exactly one data-changing statement, which the engine
        may run without a SAVEPOINT. bulk: the same write as part of a multi-row
        statement (op is the fallback).
        """
        if self._closed:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        await self._queue.put(Pending(WriteItem(op, single_statement, bulk), future))
        return await future

    async def close(self) -> None:
        """Let queued writes finish, then stop the writer tasks."""
        if self._closed:
            return
        self._closed = True
        for _ in self._tasks:  # one stop mark per task: each ends after its last batch
            await self._queue.put(None)
        await asyncio.gather(*self._tasks)
        while not self._queue.empty():  # nothing should be left; never leave a caller hanging
            item = self._queue.get_nowait()
            if item is not None and not item.future.done():
                item.future.set_exception(StoreUnavailable("the store is closed"))

    async def _serve(self, commit: Callable[[list[Pending]], Awaitable[None]]) -> None:
        """A writer task: commit batch after batch until a stop mark comes."""
        stop = False
        while not stop:
            batch, stop = await next_batch(self._queue)
            if batch:
                await commit(batch)


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


def settle(batch: list[Pending], results: list[tuple[bool, Any]]) -> None:
    """Resolve each caller's future with its op's (ok, result or error)."""
    for pending, (ok, value) in zip(batch, results, strict=True):
        if pending.future.done():  # the caller was cancelled; the write still happened
            continue
        if ok:
            pending.future.set_result(value)
        else:
            pending.future.set_exception(value)


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
