"""Reads on a few connections, each with a thread of its own.

A read takes an idle connection, runs a function of it in that connection's
thread (one hop for a whole report, not one per statement) and gives it
back; at most SIZE reads run at once per process, the rest wait their turn.
The connections refuse writes (default_transaction_read_only), autocommit:
each statement sees the latest commits, and ``snapshot`` runs a multi-query
report in one REPEATABLE READ transaction so its counts agree.

A connection the server or the network dropped fails its read
(StoreUnavailable) and is made again on its next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres.connection import Connection, translate_error

T = TypeVar("T")
SIZE = 4


class _Slot:
    """One read connection (made lazily) and the thread that uses it."""

    def __init__(self, connect: Callable[[], Connection], number: int) -> None:
        self._connect = connect
        self.conn: Connection | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"store-read-{number}")

    def run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[bool, Any]:
        """In the slot's thread: (True, result) or (False, the error for the caller).

        A read that finds its connection gone (a server restart, a failover, an idle
        connection cut by the network) is run once more on a new one: reads change
        nothing, so running one twice is harmless."""
        for attempt in (1, 2):
            try:
                if self.conn is None or not self.conn.usable:
                    self.close()
                    self.conn = self._connect()
                return True, fn(self.conn, *args)
            except Exception as exc:
                lost = self.conn is not None and not self.conn.usable
                if not lost and self.conn is not None:
                    try:
                        self.conn.rollback_if_open()
                    except Exception:  # a broken connection: made again next time
                        self.close()
                if not (lost and attempt == 1):
                    return False, translate_error(exc)
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


class ReadPool:
    def __init__(self, connect: Callable[[], Connection], size: int = SIZE) -> None:
        self._slots = [_Slot(connect, n) for n in range(size)]
        self._idle: asyncio.Queue[_Slot] = asyncio.Queue()
        for slot in self._slots:
            self._idle.put_nowait(slot)
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(connection, *args) on an idle connection; its errors as the store's."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        slot = await self._idle.get()
        try:
            loop = asyncio.get_running_loop()
            ok, value = await loop.run_in_executor(slot.thread, slot.run, fn, args)
        finally:
            # A cancelled caller gives the slot back while fn may still run: the slot's
            # single thread runs the next read after it, never beside it.
            self._idle.put_nowait(slot)
        if not ok:
            raise value
        result: T = value
        return result

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            await loop.run_in_executor(slot.thread, slot.close)
            slot.thread.shutdown(wait=False)


def snapshot(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a multi-query read in one REPEATABLE READ transaction, so its counts agree."""

    def in_transaction(conn: Connection, *args: Any) -> T:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            return fn(conn, *args)
        finally:
            conn.rollback_if_open()  # nothing was written: ending it is all

    return in_transaction
