"""The PostgreSQL backend: several processes on several hosts share one database.

Writes go through PostgresWriter (group commit on a few connections, each in
a thread of its own); reads run on a small pool of read-only connections, so a
report never waits behind a batch of events. Every query is the SQLite
backend's (relay/core/store/sql/), run through the adapter in connection.py,
and every method of the protocol is SqlStore's (store/sqlstore.py), as
SQLite's are; this module only arranges connections and transactions. A closed or
unreachable store raises StoreUnavailable, never a psycopg error.

The schema is checked at open, never changed there: `relay migrate`
(``migrate_database``) applies it, once for all the nodes sharing it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres import schema
from relay.core.store.postgres.connection import Connection, redact_url, translate_error
from relay.core.store.postgres.listen import EventListener
from relay.core.store.postgres.pool import ReadPool, snapshot
from relay.core.store.postgres.writer import PostgresWriter
from relay.core.store.sql import writes
from relay.core.store.sqlstore import HIT_TIMEOUT, SqlStore

T = TypeVar("T")
HITPROC = "relay.core.store.postgres.hitproc"  # the event writer process's module
SECRETS_LOCK = 0x72656C6179 + 1  # pg_advisory_xact_lock key: one first key per database


def migrate_database(url: str) -> tuple[int, int]:
    """`relay migrate`: bring the database's schema up to this relay's; (before, after).

    Blocking (call it from a thread in async code); StoreUnavailable when the
    server cannot be reached or the schema is newer than this relay's."""
    try:
        conn = Connection.connect(url)
    except Exception as exc:
        raise StoreUnavailable(f"cannot open {redact_url(url)}: {translate_error(exc)}") from exc
    try:
        return schema.migrate(conn)
    except StoreUnavailable:
        raise
    except Exception as exc:
        raise StoreUnavailable(f"cannot migrate {redact_url(url)}: {exc}") from exc
    finally:
        conn.close()


class PostgresStore(SqlStore):
    """The Store protocol over one PostgreSQL database (see relay.core.store.base and
    sqlstore)."""

    def __init__(
        self, url: str, events_process: bool = False, hit_timeout: float = HIT_TIMEOUT
    ) -> None:
        super().__init__(events_process, hit_timeout)
        self.url = url
        self._reads: ReadPool | None = None
        self._listener = EventListener(
            functools.partial(psycopg.connect, url, autocommit=True, application_name="relay")
        )

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    async def open(self) -> None:
        """Connect and check the schema (StoreUnavailable, one line, unless it is this
        relay's); nothing is created or changed here: see migrate_database."""
        writer = PostgresWriter(functools.partial(Connection.connect, self.url))
        try:
            await writer.call(schema.check)
        except Exception as exc:
            await writer.close()
            await self.close()
            if isinstance(exc, StoreUnavailable):
                raise
            raise StoreUnavailable(
                f"cannot open {redact_url(self.url)}: {translate_error(exc)}"
            ) from exc
        self._reads = ReadPool(functools.partial(Connection.connect, self.url, read_only=True))
        writer.start()
        self._writer = writer
        await self._start_event_writer(self.url, HITPROC)

    async def _close_connections(self) -> None:
        await self._listener.close()
        if self._reads is not None:
            await self._reads.close()

    async def reclaim_space(self, keep_bytes: int) -> int:
        """Nothing to do: PostgreSQL's autovacuum makes the space of released bodies
        (their TOAST rows) reusable, and the files are the server's to manage."""
        return 0

    async def wait_for_events(self, at_most: float) -> None:
        """Woken by any node's commit of events (LISTEN/NOTIFY), or after timeout."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        await self._listener.wait(at_most)

    # --- plumbing -------------------------------------------------------------
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._reads is None:
            raise StoreUnavailable("the store is closed")
        return await self._reads.run(fn, *args)

    _snapshot = staticmethod(snapshot)

    @staticmethod
    def _first_secret(conn: Any) -> list[str]:
        """writes.ensure_secret, one node at a time: two nodes starting together on an empty
        database would otherwise each add a first key."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (SECRETS_LOCK,))
        return writes.ensure_secret(conn)
