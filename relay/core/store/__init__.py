"""The store: the only package that speaks SQL."""

import asyncio

from relay.core.config import StoreConfig
from relay.core.store.base import DELIVERER_LEASE, Store, StoreUnavailable, holder_name


def open_store(config: StoreConfig, *, events_process: bool = False) -> Store:
    """The backend for this config; call ``await store.open()`` next.

    events_process: the caller records tracking hits at a rate worth a process of
    their own (``relay http``); a backend may ignore it.
    """
    if config.url:  # store.url wins over store.path
        from relay.core.store.postgres import PostgresStore  # psycopg only when wanted

        return PostgresStore(config.url, events_process=events_process)
    from relay.core.store.sqlite import SQLiteStore  # keeps `import relay.core.store` light

    return SQLiteStore(config.path, events_process=events_process)


def store_location(config: StoreConfig) -> tuple[str, str]:
    """(the config key, where the store is) for messages: the SQLite file, or the
    PostgreSQL URL without its password."""
    if config.url:
        from relay.core.config.checks import redact_url

        return "store.url", redact_url(config.url, "***")
    return "store.path", config.path


async def migrate_store(config: StoreConfig) -> tuple[int, int]:
    """`relay migrate`: bring the store's schema up to this relay's; (version before, after).

    PostgreSQL is migrated only here (several nodes share it); a SQLite file is
    migrated whenever a relay opens it, so this opens and closes it. Raises
    StoreUnavailable (one line) when the store cannot be reached or is newer."""
    if config.url:
        from relay.core.store.postgres import migrate_database

        return await asyncio.to_thread(migrate_database, config.url)
    from relay.core.store.sqlite import SQLiteStore
    from relay.core.store.sqlite.schema import SCHEMA_VERSION

    before = await asyncio.to_thread(_sqlite_version, config.path)
    store = SQLiteStore(config.path)
    await store.open()
    await store.close()
    return before, SCHEMA_VERSION


def _sqlite_version(path: str) -> int:
    """The file's schema version (0: no file yet, or an empty one)."""
    import sqlite3
    from pathlib import Path

    if not Path(path).exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open {path}: {exc}") from exc


__all__ = [
    "DELIVERER_LEASE",
    "Store",
    "StoreUnavailable",
    "holder_name",
    "migrate_store",
    "open_store",
    "store_location",
]
