"""Message bodies only while they are needed, and the space they leave given back.

A message's raw bytes are needed while one of its copies waits for delivery
(queued or deferred: a copy being sent is still one of these until its outcome
is committed), while a bounce of it waits to be sent (the DSN quotes its
headers), and, for a logged message, until retention (``GET
/api/messages/{id}/raw``). Past that, the row keeps everything reports read
(sender, subject, recipients, decision, size, copies, links, events) and the
body is emptied: ``body`` goes from 'held' to 'released'.

Released in the transaction that makes the last copy (or bounce) final, so no
moment exists where a finished message still holds its body by design; and
swept (``release_step``), so a body left behind by an older version, by a
crash of one, or by a path that forgot to ask is found and released too. On
SQLite the freed pages go to the file's freelist and are reused by the next
messages; ``reclaim_step`` gives what stays free beyond a reserve back to the
filesystem (``auto_vacuum = INCREMENTAL``). PostgreSQL's autovacuum makes the
space reusable by itself.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

PENDING_COPY = "state IN ('queued', 'deferred')"
SWEEP_BATCH = 500  # messages looked at per sweep step: one step never holds the writer long
RECLAIM_PAGES = 2048  # pages returned to the filesystem per step (8 MB at 4 KB pages)

_RELEASE = (
    "UPDATE messages SET raw = ?, size = COALESCE(size, length(raw)), body = 'released'"
    " WHERE id = ? AND body = 'held'"
    " AND NOT EXISTS (SELECT 1 FROM copies c WHERE c.message_id = messages.id"
    f" AND c.{PENDING_COPY})"
    " AND NOT EXISTS (SELECT 1 FROM bounces b WHERE b.message_id = messages.id"
    " AND b.state = 'pending')"
)


def release_if_done(conn: sqlite3.Connection, message_ids: Iterable[str]) -> int:
    """Empty the body of each message that no copy or bounce needs any more and that
    is not logged; returns how many were released. Runs inside the writer's
    transaction, after the outcome that may have finished the message."""
    released = 0
    for message_id in dict.fromkeys(message_ids):
        released += max(0, conn.execute(_RELEASE, (b"", message_id)).rowcount)
    return released


def release_unread(conn: sqlite3.Connection, message_id: str) -> None:
    """release_if_done for one message, its count not read (in PostgreSQL's pipeline mode
    the statement then costs no round trip of its own)."""
    conn.execute(_RELEASE, (b"", message_id))


def release_of_copy(conn: sqlite3.Connection, copy_id: int) -> int:
    row = conn.execute("SELECT message_id FROM copies WHERE id = ?", (copy_id,)).fetchone()
    return 0 if row is None else release_if_done(conn, [str(row[0])])


def release_step(conn: sqlite3.Connection, after_id: str) -> tuple[int, str | None]:
    """One sweep step over held messages with an id above ``after_id`` (served by the
    partial index messages_holding_body); returns (released, last id looked at, or None
    when the sweep is through)."""
    ids = [
        str(row[0])
        for row in conn.execute(
            "SELECT id FROM messages WHERE body = 'held' AND id > ? ORDER BY id LIMIT ?",
            (after_id, SWEEP_BATCH),
        )
    ]
    if not ids:
        return 0, None
    return release_if_done(conn, ids), ids[-1]


def free_pages(conn: sqlite3.Connection) -> tuple[int, int]:
    """(pages on the freelist, page size)."""
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return free, int(conn.execute("PRAGMA page_size").fetchone()[0])


def reclaim_step(conn: sqlite3.Connection, keep_bytes: int) -> int:
    """Give up to RECLAIM_PAGES free pages beyond ``keep_bytes`` back to the filesystem;
    returns how many pages. The reserve is reused by new messages without growing the
    file again. Does nothing on a file without incremental auto-vacuum."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) != 2:
        return 0
    free, page_size = free_pages(conn)
    excess = min(free - keep_bytes // page_size, RECLAIM_PAGES)
    if excess <= 0:
        return 0
    conn.execute(f"PRAGMA incremental_vacuum({int(excess)})").fetchall()
    return free - free_pages(conn)[0]


def file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in bytes (page count x page size), the -wal file apart."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])


def ensure_incremental_vacuum(conn: sqlite3.Connection) -> bool:
    """Convert a store made before auto_vacuum = INCREMENTAL, once: release every body
    that is no longer needed first (so the copy is small), then VACUUM, which rewrites
    the file. Returns True when it converted. Autocommit connection, no transaction."""
    if int(conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
        return False
    after: str | None = ""
    while after is not None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            _n, after = release_step(conn, after)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("VACUUM")
    return True
