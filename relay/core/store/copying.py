"""`relay store-copy FROM TO`: a SQLite store moved into an empty PostgreSQL database.

Everything is copied as it is, ids included (a copy id is signed into tokens
that are already in people's mailboxes, so they must keep working): messages
and their bodies, copies with their states, attempts and leases, links,
events, the token keys, bounces, the webhook queue and outbox, the hourly
rollup and the settings. Rows go with COPY, one table after the other, in one
transaction: an interrupted copy leaves the database as empty as it was. The
user triggers are off meanwhile, so old events are not queued for webhooks
again (the rollup is copied, not recounted). At the end the identity
sequences continue after the highest ids, and the rows of every table are
counted on both sides.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres.connection import Connection
from relay.core.store.postgres.schema import SCHEMA_VERSION as PG_VERSION
from relay.core.store.postgres.schema import current_version
from relay.core.store.sqlite.schema import SCHEMA_VERSION as SQLITE_VERSION

# Parents before children (foreign keys); the tables a relay keeps, nothing else.
TABLES = (
    "messages",
    "copies",
    "links",
    "message_links",
    "message_tags",
    "events",
    "secrets",
    "bounces",
    "webhook_queue",
    "webhook_outbox",
    "event_hours",
    "settings",
    "leases",
)
# Columns PostgreSQL has and the SQLite file may not: what they are filled with.
FILLED = {("event_hours", "shard"): 0}
CHUNK = 2000  # rows read from SQLite at a time


@dataclass(frozen=True)
class CopyReport:
    """Rows per table: (in the SQLite file, in PostgreSQL after the copy)."""

    counts: dict[str, tuple[int, int]]

    @property
    def matches(self) -> bool:
        return all(a == b for a, b in self.counts.values())


Progress = Callable[[int], None]  # called with the rows just copied


def count_rows(source: Path) -> int:
    """Rows to copy (the progress bar's total)."""
    with _open_sqlite(source) as conn:
        return sum(_count(conn, table) for table in TABLES if _has_table(conn, table))


def check_copy(source: Path, url: str) -> None:
    """What copy_store checks first, without copying: StoreUnavailable (one line) if
    either side cannot be used."""
    with _open_sqlite(source) as lite:
        _check_source(lite, source)
        with _connect(url) as pg:
            _check_target(pg)


def copy_store(source: Path, url: str, progress: Progress | None = None) -> CopyReport:
    """Copy the SQLite store at ``source`` into the PostgreSQL database at ``url``.

    Raises StoreUnavailable (one line) when either side cannot be used: the file
    missing or of another schema version, the database not migrated or not empty."""
    with _open_sqlite(source) as lite:
        _check_source(lite, source)
        with _connect(url) as pg:
            _check_target(pg)
            try:
                with pg.transaction():
                    for table in TABLES:
                        pg.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(
                            sql.Identifier(table)))  # fmt: skip
                    for table in TABLES:
                        if _has_table(lite, table):
                            _copy_table(lite, pg, table, progress)
                    for table in TABLES:
                        pg.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(
                            sql.Identifier(table)))  # fmt: skip
                    _continue_identities(pg)
            except psycopg.Error as exc:
                raise StoreUnavailable(f"the copy failed and was undone: {exc}") from None
            counts = {
                table: (_count(lite, table) if _has_table(lite, table) else 0, _pg_count(pg, table))
                for table in TABLES
            }
    return CopyReport(counts)


def _open_sqlite(source: Path) -> sqlite3.Connection:
    if not source.is_file():
        raise StoreUnavailable(f"{source}: no such SQLite store")
    try:
        return sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"{source}: cannot open: {exc}") from None


def _check_source(lite: sqlite3.Connection, source: Path) -> None:
    version = int(lite.execute("PRAGMA user_version").fetchone()[0])
    if version != SQLITE_VERSION:
        raise StoreUnavailable(
            f"{source} has schema version {version}, this relay's is {SQLITE_VERSION}:"
            " run `relay migrate` on it first (with this relay)"
        )


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(url, autocommit=False)
    except psycopg.Error as exc:
        raise StoreUnavailable(f"cannot connect to the PostgreSQL store: {exc}") from None


def _check_target(pg: psycopg.Connection[Any]) -> None:
    version = current_version(Connection(pg))
    if version != PG_VERSION:
        raise StoreUnavailable(
            f"the PostgreSQL store has schema version {version}, this relay's is {PG_VERSION}:"
            " run `relay migrate` against it first"
        )
    for table in ("messages", "events", "secrets"):
        if _pg_count(pg, table):
            raise StoreUnavailable(
                f"the PostgreSQL store is not empty ({table} has rows): copy into a new database"
            )
    pg.rollback()


def _copy_table(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any], table: str, progress: Progress | None
) -> None:
    wanted = _pg_columns(pg, table)
    present = {row[1] for row in lite.execute(f"PRAGMA table_info({table})")}
    missing = [c for c in wanted if c not in present and (table, c) not in FILLED]
    if missing:
        raise StoreUnavailable(f"{table}: the SQLite file lacks {', '.join(missing)}")
    if table == "settings":  # the new database has its own default rows
        pg.execute("DELETE FROM settings")
    read = [c if c in present else f"{FILLED[(table, c)]!r} AS {c}" for c in wanted]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in wanted)
    )
    with pg.cursor().copy(statement) as copy:
        for rows in _chunks(lite.execute(f"SELECT {', '.join(read)} FROM {table}")):
            for row in rows:
                copy.write_row(row)
            if progress is not None:
                progress(len(rows))


def _chunks(cursor: sqlite3.Cursor) -> Iterator[list[Any]]:
    while rows := cursor.fetchmany(CHUNK):
        yield rows


def _continue_identities(pg: psycopg.Connection[Any]) -> None:
    """Each identity sequence goes on after the highest id copied (ids are never reused)."""
    rows = pg.execute(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND is_identity = 'YES'"
    ).fetchall()
    for table, column in rows:
        pg.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence({t}, {c}),"
                " GREATEST((SELECT max({col}) FROM {tab}), 1),"
                " (SELECT max({col}) FROM {tab}) IS NOT NULL)"
            ).format(
                t=sql.Literal(table),
                c=sql.Literal(column),
                col=sql.Identifier(column),
                tab=sql.Identifier(table),
            )
        )


def _pg_columns(pg: psycopg.Connection[Any], table: str) -> list[str]:
    rows = pg.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def _count(conn: sqlite3.Connection, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _pg_count(pg: psycopg.Connection[Any], table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    row = pg.execute(query).fetchone()
    return int(row[0]) if row else 0
