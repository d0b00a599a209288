"""Suite-wide settings and fixtures.

Hypothesis profiles (CI: more examples, no flaky deadlines) and the `store`
fixture: a real SQLite store in tmp_path, which a directory's conftest or a
module overrides where its tests need another.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
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
