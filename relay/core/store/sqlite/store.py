"""The SQLite backend: one file in WAL mode, a group-committing writer per process.

Several processes write the one file: the SMTP front, each delivery process,
the HTTP process and its event writer process (sqlite/hitproc.py), and the
SMTP and tracking workers. Each writes through a GroupWriter of its own
(relay.core.store.sqlite.writer), and their transactions take turns at the
file's one write lock. Reads run on a connection of their own, so a report
never waits behind a batch of events. A closed or unreachable store raises
StoreUnavailable, never a sqlite3 error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiosqlite

from relay.core.store.base import StoreUnavailable
from relay.core.store.sql import bodies
from relay.core.store.sqlite import schema
from relay.core.store.sqlite.hitclient import SQLITE_CHILD
from relay.core.store.sqlite.writer import GroupWriter, run_in_thread
from relay.core.store.sqlstore import HIT_TIMEOUT, SqlStore

log = logging.getLogger("relay.store")

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
CONNECT_STOP_TIMEOUT = 5.0  # seconds to wait for the thread of a connection that failed


class SQLiteStore(SqlStore):
    """The Store protocol over one SQLite file (see relay.core.store.base and sqlstore)."""

    def __init__(
        self, path: str, events_process: bool = False, hit_timeout: float = HIT_TIMEOUT
    ) -> None:
        super().__init__(events_process, hit_timeout)
        self.path = path
        self._write_conn: aiosqlite.Connection | None = None
        self._read_conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        try:
            create_private(self.path)
            self._write_conn = await _connect(self.path)
            await run_in_thread(self._write_conn, schema.configure, BUSY_TIMEOUT_MS)
            await run_in_thread(self._write_conn, schema.migrate)
            await self._ensure_incremental_vacuum(self._write_conn)
            self._read_conn = await _connect(self.path)
            await run_in_thread(self._read_conn, schema.configure, BUSY_TIMEOUT_MS)
            await run_in_thread(self._read_conn, lambda c: c.execute("PRAGMA query_only=ON"))
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        writer = GroupWriter(self._write_conn)
        writer.start()
        self._writer = writer
        await self._start_event_writer(self.path, SQLITE_CHILD)

    async def _ensure_incremental_vacuum(self, conn: aiosqlite.Connection) -> None:
        """A store made before schema step 7 is rewritten once (store/sql/bodies.py)."""
        mode = await run_in_thread(conn, lambda c: c.execute("PRAGMA auto_vacuum").fetchone())
        if int(mode[0]) == 2:
            return
        size = await run_in_thread(conn, bodies.file_bytes)
        log.warning(
            "%s: releasing delivered bodies and rewriting the file once for incremental"
            " auto-vacuum (%.0f MB; needs as much free space in the temporary directory)",
            self.path,
            size / 1e6,
        )
        started = time.monotonic()
        await run_in_thread(conn, bodies.ensure_incremental_vacuum)
        after = await run_in_thread(conn, bodies.file_bytes)
        took = time.monotonic() - started
        log.warning("%s: converted in %.1fs, now %.0f MB", self.path, took, after / 1e6)

    async def _close_connections(self) -> None:
        for conn in (self._write_conn, self._read_conn):
            if conn is not None:
                await conn.close()

    async def reclaim_space(self, keep_bytes: int) -> int:
        """Free pages beyond keep_bytes go back to the filesystem, a batch per write op;
        returns the bytes given back."""
        pages = 0
        while step := await self._write(lambda c: bodies.reclaim_step(c, keep_bytes)):
            pages += step
        page_size = await self._read(lambda c: int(c.execute("PRAGMA page_size").fetchone()[0]))
        return pages * page_size

    async def wait_for_events(self, at_most: float) -> None:
        """Nothing tells one SQLite connection of another process's commit: poll."""
        await asyncio.sleep(at_most)

    # --- plumbing -------------------------------------------------------------
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._read_conn is None:
            raise StoreUnavailable("the store is closed")
        return await run_in_thread(self._read_conn, fn, *args)

    @staticmethod
    def _snapshot(fn: Callable[..., T]) -> Callable[..., T]:
        """Run a multi-query read in one read transaction, so its counts agree with each other."""

        def in_transaction(conn: sqlite3.Connection, *args: Any) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")

        return in_transaction


def create_private(path: str) -> None:
    """Create the store file 0600 (owner only) before SQLite opens it; an existing file
    keeps its mode. SQLite gives the -wal and -shm files the main file's mode.

    The store holds the token-signing key and logged mail, so no other local user
    may read it, whatever the umask.
    """
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


async def _connect(path: str) -> aiosqlite.Connection:
    """aiosqlite.connect; a failed connect waits for its worker thread to end.

    aiosqlite stops the thread of a connection that failed to open without
    waiting for it, and the thread then reports to the event loop, which may
    be closed by then (a command that fails to open its store exits at once):
    an exception in a thread. Waiting here costs nothing on the normal path.
    """
    conn = aiosqlite.connect(path, isolation_level=None)
    try:
        return await conn
    except BaseException:
        thread = getattr(conn, "_thread", None)  # private, like _execute (writer.py)
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, CONNECT_STOP_TIMEOUT)
        raise
