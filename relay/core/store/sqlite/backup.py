"""`relay backup FILE`: a consistent copy of a running SQLite store.

SQLite's online backup API copies the database page by page inside read
transactions, so the copy is one consistent state even while the relay
writes (WAL mode lets the writers go on). The copy is written beside its
final name, flushed, then renamed, and created 0600 like the store: it
holds the token-signing key and logged mail.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from relay.core.files import replace_durably, temporary_beside

PAGES_PER_STEP = 1024  # ~4 MB at a time; writers get the lock between steps


def backup_store(
    source: str, target: Path, progress: Callable[[int, int], None] | None = None
) -> int:
    """Copy the store at `source` to `target`; returns the copy's size in bytes.

    Raises sqlite3.Error or OSError with what went wrong; `target` is then
    left as it was (the temporary file is removed).
    """
    if not Path(source).is_file():
        raise FileNotFoundError(f"{source}: no store there")
    temporary = temporary_beside(target)
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(temporary)
            try:

                def step(_status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                src.backup(dst, pages=PAGES_PER_STEP, progress=step)
                check = dst.execute("PRAGMA integrity_check").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"the copy fails its integrity check: {check}")
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            finally:
                dst.close()
        finally:
            src.close()
        replace_durably(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target.stat().st_size
