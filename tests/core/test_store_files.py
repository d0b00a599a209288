"""The store's files on disk are the owner's alone: it holds the signing key and mail."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.stores import open_sqlite


def mode(path: Path) -> int | None:
    """The permission bits of path, None when there is no such file."""
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask 022, which would make a plainly created file 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
async def test_store_and_its_wal_and_shm_are_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    store = await open_sqlite(path)
    try:
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        # WAL mode: both exist while the store is open
        assert [mode(p) for p in (path, wal, shm)] == [0o600, 0o600, 0o600]
    finally:
        await store.close()
    assert mode(path) == 0o600
    reopened = await open_sqlite(path)  # the existing file still opens, and stays 0600
    await reopened.close()
    assert mode(path) == 0o600


@pytest.mark.usefixtures("permissive_umask")
async def test_an_existing_store_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    path.touch(mode=0o640)  # an operator's choice (a group that reads reports) is kept
    path.chmod(0o640)
    store = await open_sqlite(path)
    try:
        assert mode(path) == 0o640 and mode(Path(f"{path}-wal")) == 0o640
    finally:
        await store.close()
