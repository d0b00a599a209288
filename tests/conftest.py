"""Suite-wide settings and fixtures.

Hypothesis profiles (CI: more examples, no flaky deadlines) and the `store`
fixture: a real SQLite store in tmp_path, which a directory's conftest or a
module overrides where its tests need another. `postgres_url` is a fresh, empty
database on a private PostgreSQL server (`postgres_server`, started once per
run, and only when a test asks for it).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from support.postgres import PostgresServer, PostgresUnavailable
from support.stores import open_sqlite

from relay.core.store.sqlite import SQLiteStore

settings.register_profile(
    "default",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    """The store at tmp_path/relay.db, opened; closed after the test."""
    opened = await open_sqlite(tmp_path / "relay.db")
    yield opened
    await opened.close()  # closing twice (a test closed it) must be harmless


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL server (fsync on) for the whole run; stopped and removed after.

    Fails, never skips, when PostgreSQL is not installed."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        missing = str(exc)
    else:
        yield server
        server.stop()
        return
    pytest.fail(missing, pytrace=False)


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """postgresql://relay@127.0.0.1:PORT/NAME of a fresh, empty database; dropped after the test."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)
