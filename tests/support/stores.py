"""Real stores, opened the way the relay opens them: SQLite files and PostgreSQL databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from relay.core.config import StoreConfig
from relay.core.store import migrate_store, open_store
from relay.core.store.postgres import PostgresStore
from relay.core.store.postgres.connection import translate
from relay.core.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore


async def open_sqlite(path: Path) -> SQLiteStore:
    """open_store() at `path`, checked to be the SQLite backend, and opened."""
    store = open_store(StoreConfig(path=str(path)))
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


async def open_postgres(url: str) -> PostgresStore:
    """open_store() at `url` (migrated first, as `relay migrate` does), checked to be the
    PostgreSQL backend, and opened."""
    config = StoreConfig(url=url)
    await migrate_store(config)
    store = open_store(config)
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


@dataclass(frozen=True)
class Backend:
    """Where a test's store lives, whatever the engine: open it (again), or look at its
    tables from a connection of its own, as another process would."""

    name: str  # "sqlite" or "postgres"
    location: str  # the file, or the database URL

    @property
    def config(self) -> StoreConfig:
        if self.name == "sqlite":
            return StoreConfig(path=self.location)
        return StoreConfig(url=self.location)

    async def open(self) -> AnyStore:
        if self.name == "sqlite":
            return await open_sqlite(Path(self.location))
        return await open_postgres(self.location)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query (SQLite's `?` style) on a separate connection."""
        if self.name == "sqlite":
            with sqlite3.connect(self.location) as conn:
                found = conn.execute(sql, params).fetchall()
            conn.close()
            return found
        with psycopg.connect(self.location, autocommit=True) as pg:
            return pg.execute(translate(sql), params).fetchall()

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        """One statement, committed, on a separate connection (what a crash leaves)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.location, isolation_level=None) as conn:
                conn.execute(sql, params)
            conn.close()
            return
        with psycopg.connect(self.location, autocommit=True) as pg:
            pg.execute(translate(sql), params)


Opener = Callable[[], Awaitable[AnyStore]]
