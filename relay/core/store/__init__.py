"""The store: the only package that speaks SQL."""

from relay.core.config import StoreConfig
from relay.core.store.base import Store, StoreUnavailable


def open_store(config: StoreConfig) -> Store:
    """The backend for this config (SQLite today); call ``await store.open()`` next."""
    from relay.core.store.sqlite import SQLiteStore  # keeps `import relay.core.store` light

    return SQLiteStore(config.path)


__all__ = ["Store", "StoreUnavailable", "open_store"]
