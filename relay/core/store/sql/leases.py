"""Work shared by leases: copies, pending bounces and named jobs.

A worker takes a due copy (or bounce) by writing its own name and a time into
the row; until that time no other worker takes it. The worker renews the
lease while it sends; recording the outcome clears it. A worker that dies
stops renewing, so its copies become due again when their leases end: a copy
is sent twice only when its worker died while sending it.

On SQLite a claim runs in a write transaction (BEGIN IMMEDIATE), and the file
has one write lock for every process that writes it, so a claim is atomic by
itself; on PostgreSQL ``FOR UPDATE SKIP LOCKED`` makes concurrent claims from
many processes skip each other's rows instead of waiting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relay.core.models import Copy, PendingBounce
from relay.core.store.sql.dialect import indexed_by, skip_locked
from relay.core.store.sql.reads import COPY_COLUMNS, copy_from_row

MAX_OWNER = 200  # characters of a worker's name


def claim_copies(
    conn: sqlite3.Connection, owner: str, now: float, until: float, limit: int
) -> list[Copy]:
    """Due copies that nobody holds, taken by ``owner`` until ``until``; oldest due first.

    The inner SELECT walks the partial index copies_due in order."""
    rows = conn.execute(
        f"UPDATE copies SET lease_owner = ?, lease_until = ? WHERE id IN ("
        f" SELECT id FROM copies{indexed_by(conn, 'copies_due')}"
        " WHERE state IN ('queued', 'deferred')"
        " AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
        f" ORDER BY next_attempt_at, id LIMIT ?{skip_locked(conn)})"
        f" RETURNING {COPY_COLUMNS}",
        (owner[:MAX_OWNER], until, now, now, limit),
    ).fetchall()
    copies = [copy_from_row(r) for r in rows]
    copies.sort(key=lambda c: (c.next_attempt_at, c.id))  # RETURNING keeps no order
    return copies


def renew_copies(
    conn: sqlite3.Connection, owner: str, copy_ids: Sequence[int], until: float
) -> int:
    """Extend this owner's leases; returns how many it still held."""
    if not copy_ids:
        return 0
    marks = ",".join("?" * len(copy_ids))
    cursor = conn.execute(
        f"UPDATE copies SET lease_until = ? WHERE lease_owner = ? AND id IN ({marks})",
        (until, owner[:MAX_OWNER], *copy_ids),
    )
    return max(0, cursor.rowcount)


def release_copies(conn: sqlite3.Connection, owner: str, copy_ids: Sequence[int]) -> int:
    """Give copies back without an outcome (a worker stopping): due again at once."""
    if not copy_ids:
        return 0
    marks = ",".join("?" * len(copy_ids))
    cursor = conn.execute(
        "UPDATE copies SET lease_owner = NULL, lease_until = NULL"
        f" WHERE lease_owner = ? AND id IN ({marks})",
        (owner[:MAX_OWNER], *copy_ids),
    )
    return max(0, cursor.rowcount)


def claim_bounces(
    conn: sqlite3.Connection, owner: str, now: float, until: float, limit: int
) -> list[PendingBounce]:
    """Pending bounces that are due and nobody holds, taken by ``owner`` until ``until``."""
    rows = conn.execute(
        "UPDATE bounces SET lease_owner = ?, lease_until = ? WHERE copy_id IN ("
        " SELECT copy_id FROM bounces WHERE state = 'pending' AND next_attempt_at <= ?"
        " AND (lease_until IS NULL OR lease_until <= ?)"
        f" ORDER BY next_attempt_at LIMIT ?{skip_locked(conn)})"
        " RETURNING copy_id, message_id, reason, attempts, created_at, next_attempt_at",
        (owner[:MAX_OWNER], until, now, now, limit),
    ).fetchall()
    rows.sort(key=lambda r: (float(r[5]), int(r[0])))
    return [PendingBounce(int(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]


def take_named(conn: sqlite3.Connection, name: str, owner: str, now: float, until: float) -> bool:
    """The lease called ``name`` for ``owner`` until ``until``, if it is free, expired or
    already this owner's; False while another owner holds it."""
    row = conn.execute(
        "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until"
        " WHERE leases.owner = excluded.owner OR leases.until <= ?"
        " RETURNING owner",
        (name, owner[:MAX_OWNER], until, now),
    ).fetchone()
    return row is not None


def count_named(conn: sqlite3.Connection, prefix: str, now: float) -> int:
    """Named leases starting with ``prefix`` that have not ended (live workers)."""
    row = conn.execute(
        "SELECT count(*) FROM leases WHERE substr(name, 1, ?) = ? AND until > ?",
        (len(prefix), prefix, now),
    ).fetchone()
    return int(row[0])


def drop_named(conn: sqlite3.Connection, name: str, owner: str) -> None:
    conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner[:MAX_OWNER]))
