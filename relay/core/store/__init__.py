"""The store: the only package that speaks SQL."""

from relay.core.config import StoreConfig
from relay.core.store.base import DELIVERER_LEASE, Store, StoreUnavailable


def open_store(config: StoreConfig, *, events_process: bool = False) -> Store:
    """The backend for this config; call ``await store.open()`` next.

    events_process: the caller records tracking hits at a rate worth a process of
    their own (``relay http``); a backend may ignore it.
    """
    from relay.core.store.sqlite import SQLiteStore  # keeps `import relay.core.store` light

    return SQLiteStore(config.path, events_process=events_process)


__all__ = ["DELIVERER_LEASE", "Store", "StoreUnavailable", "open_store"]
