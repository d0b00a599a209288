"""The SQLite backend: one file, WAL, group-committed writes (the embedded default)."""

from relay.core.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
