"""Real SQLite stores on files, opened the way the relay opens them."""

from __future__ import annotations

from pathlib import Path

from relay.core.config import StoreConfig
from relay.core.store import open_store
from relay.core.store.sqlite import SQLiteStore


async def open_sqlite(path: Path) -> SQLiteStore:
    """open_store() at `path`, checked to be the SQLite backend, and opened."""
    store = open_store(StoreConfig(path=str(path)))
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store
