"""The store tests run against every backend: ids [sqlite] and [postgres].

`store` here is the one fixture of the Store protocol's tests: an opened store
of each engine (a file in tmp_path; a fresh, migrated PostgreSQL database).
`backend` says where it lives, to open it again or to look at its tables from
another connection. A module about one engine's own machinery (SQLite files,
the event writer process) defines its own `store` and runs once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.stores import AnyStore, Backend, open_sqlite

from relay.core.store.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "relay.db"))
    return Backend("postgres", request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[AnyStore]:
    """The backend's store, opened; closed after the test (closing twice is harmless)."""
    opened = await backend.open()
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """The SQLite store at tmp_path/relay.db, for tests of SQLite's own machinery."""
    opened = await open_sqlite(tmp_path / "relay.db")
    yield opened
    await opened.close()
