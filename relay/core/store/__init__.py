"""The store: the only package that speaks SQL."""

from relay.core.store.base import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable"]
