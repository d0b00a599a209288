"""The queue's own SQL: depth, operator actions (list, retry, delete) and the bounce outbox.

Write functions run inside a writer's batch transaction (see writes.py); read
functions on a read connection. The bounces table is filled in the same
transaction that marks a copy bounced, so a crash can neither lose a bounce nor
record one twice (its primary key is the copy id).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from relay.core.models import Copy, CopyPart, DeliveryOutcome, PendingBounce, QueueEntry
from relay.core.store.sql.bodies import (
    release_if_done,
    release_of_copy,
    release_unread,
)
from relay.core.store.sql.dialect import Unconfirmed, is_postgres, pipelined, text_array
from relay.core.store.sql.reads import COPY_COLUMNS, copy_from_row
from relay.core.store.sql.writes import (
    MAX_LINKS,
    clean_text,
    outcome_state,
    store_links,
    update_copy,
)

QUEUED = "state IN ('queued', 'deferred')"
MAX_IDS = 10_000  # ids per retry/delete call; the CLI sends larger sets in batches


def record_outcome(
    conn: sqlite3.Connection,
    copy_id: int,
    outcome: DeliveryOutcome,
    next_attempt_at: float | None,
    rewrite_note: str,
    links: Sequence[str] | None = None,
) -> Unconfirmed | None:
    """writes.apply_outcome, and writes.replace_links when ``links`` is given (the
    links the copy's rewrite made, recorded in the same write), plus a bounces row when
    the copy is now bounced; then the message's body is released if this was the last
    copy it was kept for.

    On SQLite one result is read, the first: the copy's message, its sender and the
    message's shared links; everything after it only writes. On PostgreSQL the same
    writes are its relay_outcome function, whatever way the batch runs, so an outcome
    has one definition per engine (record_outcome_unread); in a pipelined batch it is
    confirmed once the batch came back, otherwise at once."""
    if is_postgres(conn):
        written = record_outcome_unread(
            conn, copy_id, outcome, next_attempt_at, rewrite_note, links
        )
        if pipelined(conn):
            return written
        written.confirm()
        return None
    if links is None:
        rows = conn.execute(
            "SELECT c.message_id, m.mail_from, NULL FROM copies c"
            " JOIN messages m ON m.id = c.message_id WHERE c.id = ?",
            (copy_id,),
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT c.message_id, m.mail_from, ml.url FROM copies c"
            " JOIN messages m ON m.id = c.message_id"
            " LEFT JOIN message_links ml ON ml.message_id = c.message_id"
            " WHERE c.id = ? ORDER BY ml.idx",
            (copy_id,),
        ).fetchall()
    if not rows:
        raise ValueError(f"no copy {copy_id}")
    message_id, mail_from = str(rows[0][0]), rows[0][1]
    links_shared = None
    if links is not None:
        shared = [str(row[2]) for row in rows if row[2] is not None]
        links_shared = store_links(conn, copy_id, message_id, links, shared)
    state, _ = update_copy(conn, copy_id, outcome, next_attempt_at, rewrite_note, links_shared)
    if state == "deferred":
        return None
    if state == "bounced":
        # Never a DSN for a message whose sender was empty (RFC 5321 6.1: no bounce loops).
        kind = "pending" if mail_from else "skipped"
        now = time.time()
        conn.execute(
            "INSERT INTO bounces (copy_id, message_id, state, reason, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (copy_id, message_id, kind, clean_text(outcome.reply), now, now),
        )
    release_unread(conn, message_id)
    return None


def record_outcome_unread(
    conn: sqlite3.Connection,
    copy_id: int,
    outcome: DeliveryOutcome,
    next_attempt_at: float | None,
    rewrite_note: str,
    links: Sequence[str] | None = None,
) -> Unconfirmed:
    """record_outcome in one statement with no result read before COMMIT: PostgreSQL's
    relay_outcome function (postgres/schema.py) makes the same writes, the copy's
    message, its sender and its message's list looked up inside it. Each read cost the
    batch a round trip (k + 1 for k outcomes, and with the server on the same cores each
    waits to be scheduled); each statement about 25 us of this process's CPU. Whether
    the copy exists is confirmed once the batch's statements came back."""
    if links is not None and len(links) > MAX_LINKS:
        raise ValueError(f"at most {MAX_LINKS} links per copy")
    state = outcome_state(outcome, next_attempt_at)
    done = conn.execute(
        "SELECT relay_outcome(?, ?, ?, ?, ?, ?, ?, ?::text[], ?)",
        (
            copy_id,
            state,
            clean_text(outcome.reply),
            clean_text(outcome.queue_id),
            next_attempt_at if state == "deferred" else None,
            time.time() if state == "delivered" else None,
            clean_text(rewrite_note),
            None if links is None else text_array([clean_text(url) for url in links]),
            time.time(),
        ),
    )

    def confirm() -> None:
        if done.fetchone()[0] < 1:
            raise ValueError(f"no copy {copy_id}")

    return Unconfirmed(confirm)


def record_parts(
    conn: sqlite3.Connection,
    copy_id: int,
    parts: Sequence[CopyPart],
    rewrite_note: str,
    links: Sequence[str] | None = None,
) -> list[int]:
    """A shared copy whose recipients got different outcomes, split by outcome.

    The copy keeps the first part's recipients (the ones its tokens went to);
    each further part becomes a new shared copy of the message with the same
    attempts, recorded like any outcome (so a deferred part is retried on the
    schedule alone, a bounced one gets its bounce row, and the webhook triggers
    fire). One transaction: a crash leaves the copy whole or split, never half.
    Returns the copy ids, in the order of parts.
    """
    if not parts:
        raise ValueError("no parts")
    row = conn.execute(
        "SELECT message_id, attempts FROM copies WHERE id = ? AND recipient IS NULL", (copy_id,)
    ).fetchone()
    if row is None:
        raise ValueError(f"no shared copy {copy_id}")
    now = time.time()
    ids = [copy_id]
    for _part in parts[1:]:
        new = conn.execute(
            "INSERT INTO copies (message_id, recipient, rcpt_tos, state, attempts,"
            " next_attempt_at, created_at) VALUES (?, NULL, '[]', 'queued', ?, ?, ?)"
            " RETURNING id",
            (row[0], row[1], now, now),
        ).fetchone()
        ids.append(int(new[0]))
    for part_id, part in zip(ids, parts, strict=True):
        first = part_id == copy_id
        note = rewrite_note if first else ""
        record_outcome(
            conn, part_id, part.outcome, part.next_attempt_at, note, links if first else None
        )
        conn.execute(  # JSON text is ASCII (escaped), so no clean_text is needed
            "UPDATE copies SET rcpt_tos = ?, rcpt_replies = ? WHERE id = ?",
            (json.dumps(list(part.rcpt_tos)), json.dumps(dict(part.replies)), part_id),
        )
    return ids


def queue_depth(conn: sqlite3.Connection) -> dict[str, int]:
    """Copies by state (served by copies_by_state); every state present, 0 when none."""
    depth = dict.fromkeys(("queued", "deferred", "delivered", "bounced"), 0)
    for state, n in conn.execute("SELECT state, count(*) FROM copies GROUP BY state"):
        depth[str(state)] = int(n)
    return depth


def count_queued(conn: sqlite3.Connection) -> int:
    """Copies waiting for delivery (served by the partial index copies_due)."""
    row = conn.execute(f"SELECT count(*) FROM copies WHERE {QUEUED}").fetchone()
    return int(row[0])


def oldest_queued(conn: sqlite3.Connection) -> float | None:
    """The arrival of the message of the lowest-numbered waiting copy: copy ids grow with
    time, and min(id) per state is one step of the index copies_by_state."""
    row = conn.execute(
        "SELECT min(m.received_at) FROM messages m JOIN copies c ON c.message_id = m.id"
        " WHERE c.id IN (SELECT min(id) FROM copies WHERE state = 'queued'"
        " UNION ALL SELECT min(id) FROM copies WHERE state = 'deferred')"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def list_queue(conn: sqlite3.Connection, after_id: int, limit: int) -> list[Copy]:
    """Queued and deferred copies by id, a page at a time."""
    rows = conn.execute(
        f"SELECT {COPY_COLUMNS} FROM copies WHERE {QUEUED} AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [copy_from_row(r) for r in rows]


QUEUE_PAGE_STATES = frozenset({"queued", "deferred", "bounced"})
_COPY_COLUMNS_C = ", ".join("c." + name.strip() for name in COPY_COLUMNS.split(","))


def queue_entries(
    conn: sqlite3.Connection, states: Sequence[str], before_id: int | None, limit: int
) -> list[QueueEntry]:
    """Copies in these states, newest first (ids below before_id), with their message's
    sender, subject and arrival: the dashboard's queue page."""
    wanted = sorted(set(states) & QUEUE_PAGE_STATES)
    if not wanted:
        return []
    marks = ",".join("?" * len(wanted))
    rows = conn.execute(
        f"SELECT {_COPY_COLUMNS_C}, m.sender, m.subject, m.received_at, m.body FROM copies c"
        f" JOIN messages m ON m.id = c.message_id WHERE c.state IN ({marks}) AND c.id < ?"
        " ORDER BY c.id DESC LIMIT ?",
        (*wanted, 2**62 if before_id is None else before_id, limit),
    ).fetchall()
    return [
        QueueEntry(copy_from_row(r), str(r[-4]), str(r[-3]), float(r[-2]), r[-1] != "released")
        for r in rows
    ]


def copies_of(conn: sqlite3.Connection, message_id: str) -> list[Copy]:
    rows = conn.execute(
        f"SELECT {COPY_COLUMNS} FROM copies WHERE message_id = ? ORDER BY id", (message_id,)
    ).fetchall()
    return [copy_from_row(r) for r in rows]


def retry_now(conn: sqlite3.Connection, copy_ids: Sequence[int], now: float) -> int:
    """Make queued/deferred copies due at once; returns how many were."""
    _check_ids(copy_ids)
    cursor = conn.executemany(
        f"UPDATE copies SET next_attempt_at = ? WHERE id = ? AND {QUEUED}",
        [(now, cid) for cid in copy_ids],
    )
    return max(0, cursor.rowcount)


def requeue_bounced(conn: sqlite3.Connection, copy_ids: Sequence[int], now: float) -> int:
    """Send bounced copies again (an operator fixed what refused them): queued, due now.

    Only while the message's body is kept (store/sql/bodies.py releases it once nothing
    waits). A DSN not sent yet is dropped with its pending row; one already sent stays
    recorded, and the copy, should it bounce again, gets no second one."""
    _check_ids(copy_ids)
    if not copy_ids:
        return 0
    marks = ",".join("?" * len(copy_ids))
    cursor = conn.execute(
        "UPDATE copies SET state = 'queued', next_attempt_at = ?, lease_owner = NULL,"
        f" lease_until = NULL WHERE id IN ({marks}) AND state = 'bounced' AND message_id IN"
        " (SELECT id FROM messages WHERE body != 'released')",
        (now, *copy_ids),
    )
    conn.execute(
        f"DELETE FROM bounces WHERE copy_id IN ({marks}) AND state = 'pending'"
        " AND copy_id IN (SELECT id FROM copies WHERE state = 'queued')",
        list(copy_ids),
    )
    return max(0, cursor.rowcount)


def delete_queued(conn: sqlite3.Connection, copy_ids: Sequence[int]) -> int:
    """Remove queued/deferred copies (no bounce), and their message once no copy is left."""
    _check_ids(copy_ids)
    if not copy_ids:
        return 0
    marks = ",".join("?" * len(copy_ids))
    messages = [
        str(r[0])
        for r in conn.execute(
            f"SELECT DISTINCT message_id FROM copies WHERE id IN ({marks})", list(copy_ids)
        )
    ]
    cursor = conn.execute(f"DELETE FROM copies WHERE id IN ({marks}) AND {QUEUED}", list(copy_ids))
    conn.executemany(
        "DELETE FROM messages WHERE id = ? AND NOT EXISTS"
        " (SELECT 1 FROM copies WHERE message_id = messages.id)",
        [(mid,) for mid in messages],
    )
    release_if_done(conn, messages)  # the copies left may all be final
    return max(0, cursor.rowcount)


def due_bounces(conn: sqlite3.Connection, now: float, limit: int) -> list[PendingBounce]:
    rows = conn.execute(
        "SELECT copy_id, message_id, reason, attempts, created_at FROM bounces"
        " WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
        (now, limit),
    ).fetchall()
    return [PendingBounce(int(r[0]), str(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows]


def bounce_state(conn: sqlite3.Connection, copy_id: int) -> str | None:
    row = conn.execute("SELECT state FROM bounces WHERE copy_id = ?", (copy_id,)).fetchone()
    return None if row is None else str(row[0])


def settle_bounce(
    conn: sqlite3.Connection, copy_id: int, state: str, reply: str, next_attempt_at: float | None
) -> None:
    """state: sent | failed (final) or pending (try again at next_attempt_at)."""
    if state not in ("sent", "failed", "pending"):
        raise ValueError(f"unknown bounce state {state!r}")
    now = time.time()
    conn.execute(
        "UPDATE bounces SET state = ?, attempts = attempts + 1, last_reply = ?,"
        " lease_owner = NULL, lease_until = NULL,"
        " next_attempt_at = COALESCE(?, next_attempt_at),"
        " sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE copy_id = ?",
        (state, clean_text(reply), next_attempt_at, state, now, copy_id),
    )
    if state != "pending":
        release_of_copy(conn, copy_id)


def _check_ids(copy_ids: Sequence[int]) -> None:
    if len(copy_ids) > MAX_IDS:
        raise ValueError(f"at most {MAX_IDS} copies per call")
