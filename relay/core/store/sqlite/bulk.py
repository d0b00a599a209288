"""A bulk loader: fills a store file fast, for benchmarks and imports.

The relay's own writes are fsync'd one batch at a time, which is right for
live traffic and far too slow for a million synthetic rows. The loader runs
on its own connection, in one transaction, with ``synchronous=OFF``: use it
only on a file no relay has open, and only for data you can make again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from types import TracebackType

from relay.core.models import CopySpec, Event, NewMessage
from relay.core.store.sql import writes
from relay.core.store.sqlite import schema

CACHE_KIB = 256 * 1024


class BulkLoader:
    """``with BulkLoader(path) as load: load.add_message(...); load.add_events(...)``."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        schema.configure(self._conn, busy_timeout_ms=5000)
        schema.migrate(self._conn)
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # the indexes stay in memory
        self._conn.execute("BEGIN IMMEDIATE")

    def add_message(self, msg: NewMessage, copies: Sequence[CopySpec]) -> tuple[str, list[int]]:
        """Spool one message; returns its id and its copies' ids in the order given."""
        message_id = writes.new_message_id(msg.received_at)
        writes.insert_message(self._conn, message_id, msg, copies)
        rows = self._conn.execute(
            "SELECT id FROM copies WHERE message_id = ? ORDER BY id", (message_id,)
        ).fetchall()
        return message_id, [int(row[0]) for row in rows]

    def add_links(self, copy_id: int, urls: Sequence[str]) -> None:
        writes.replace_links(self._conn, copy_id, urls)

    def add_events(self, events: Iterable[Event]) -> int:
        """Insert events as they come (an iterator keeps memory flat); returns how many."""
        count = 0
        for event in events:
            writes.insert_event(self._conn, event)
            count += 1
        return count

    def deliver(self, copies: Iterable[tuple[int, float]]) -> None:
        """Mark copies delivered at the given times, as a successful attempt would."""
        self._conn.executemany(
            "UPDATE copies SET state = 'delivered', attempts = 1, delivered_at = ? WHERE id = ?",
            [(at, copy_id) for copy_id, at in copies],
        )

    def close(self, commit: bool = True) -> None:
        """Commit (or roll back) and close; the file is then an ordinary store."""
        try:
            self._conn.execute("COMMIT" if commit else "ROLLBACK")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()

    def __enter__(self) -> BulkLoader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(commit=kind is None)
