"""Write operations: plain functions of a sqlite3 connection, run by the GroupWriter.

Each runs inside the writer's batch transaction (and its own SAVEPOINT), so it
must not BEGIN or COMMIT itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Sequence

from relay.core.models import CopySpec, DeliveryOutcome, Event, NewMessage, TrackingDecision

MAX_COPIES = 100_000
MAX_LINKS = 100_000
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """SQLite text must be valid UTF-8: lone surrogates (from surrogateescape) become U+FFFD."""
    return _SURROGATE.sub("\ufffd", value)


def decision_json(decision: TrackingDecision) -> str:
    return json.dumps(dataclasses.asdict(decision))


def new_message_id(received_at: float) -> str:
    """12 hex digits of milliseconds then 8 random: unique, URL-safe, sorts by time."""
    millis = max(0, min(int(received_at * 1000), 16**12 - 1))
    return f"{millis:012x}{secrets.token_hex(4)}"


def insert_message(
    conn: sqlite3.Connection, message_id: str, msg: NewMessage, copies: Sequence[CopySpec]
) -> str:
    if len(copies) > MAX_COPIES:
        raise ValueError(f"at most {MAX_COPIES} copies per message")
    conn.execute(
        "INSERT INTO messages (id, mail_from, rcpt_tos, received_at, client_addr,"
        " auth_user, sender, subject, message_id_header, decision, in_reply_to, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            clean_text(msg.mail_from),
            json.dumps(list(msg.rcpt_tos)),
            msg.received_at,
            clean_text(msg.client_addr),
            None if msg.auth_user is None else clean_text(msg.auth_user),
            clean_text(msg.sender),
            clean_text(msg.subject),
            clean_text(msg.message_id_header),
            decision_json(msg.decision),
            json.dumps(list(msg.in_reply_to)),
            msg.raw,
        ),
    )
    now = time.time()
    conn.executemany(
        "INSERT INTO copies (message_id, recipient, rcpt_tos, state, next_attempt_at, created_at)"
        " VALUES (?, ?, ?, 'queued', ?, ?)",
        [
            (
                message_id,
                None if spec.recipient is None else clean_text(spec.recipient),
                json.dumps(list(spec.rcpt_tos)),
                msg.received_at,
                now,
            )
            for spec in copies
        ],
    )
    return message_id


def replace_links(conn: sqlite3.Connection, copy_id: int, urls: Sequence[str]) -> None:
    """Idempotent: a retried delivery rewrites again and records the same list."""
    if len(urls) > MAX_LINKS:
        raise ValueError(f"at most {MAX_LINKS} links per copy")
    _require_copy(conn, copy_id)
    conn.execute("DELETE FROM links WHERE copy_id = ?", (copy_id,))
    conn.executemany(
        "INSERT INTO links (copy_id, idx, url) VALUES (?, ?, ?)",
        [(copy_id, i, clean_text(url)) for i, url in enumerate(urls)],
    )


def apply_outcome(
    conn: sqlite3.Connection,
    copy_id: int,
    outcome: DeliveryOutcome,
    next_attempt_at: float | None,
    rewrite_note: str,
) -> None:
    """delivered -> delivered; permanent, or temporary with no next attempt -> bounced."""
    _require_copy(conn, copy_id)
    now = time.time()
    if outcome.status == "delivered":
        state, delivered_at = "delivered", now
    elif outcome.status == "temporary" and next_attempt_at is not None:
        state, delivered_at = "deferred", None
    else:
        state, delivered_at = "bounced", None
    conn.execute(
        "UPDATE copies SET state = ?, attempts = attempts + 1, last_reply = ?,"
        " queue_id = CASE WHEN ? = '' THEN queue_id ELSE ? END,"
        " next_attempt_at = COALESCE(?, next_attempt_at), delivered_at = ?,"
        " rewrite_note = CASE WHEN ? = '' THEN rewrite_note ELSE ? END"
        " WHERE id = ?",
        (
            state,
            clean_text(outcome.reply),
            outcome.queue_id,
            clean_text(outcome.queue_id),
            next_attempt_at if state == "deferred" else None,
            delivered_at,
            rewrite_note,
            clean_text(rewrite_note),
            copy_id,
        ),
    )


def insert_event(conn: sqlite3.Connection, event: Event) -> int:
    """Exactly one statement: the writer runs it without a SAVEPOINT."""
    cursor = conn.execute(
        "INSERT INTO events (kind, copy_id, message_id, recipient, at, ip, user_agent, klass,"
        " reasons, url, link_index, inferred, extra)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.kind,
            event.copy_id,
            event.message_id,
            None if event.recipient is None else clean_text(event.recipient),
            event.at,
            clean_text(event.ip),
            clean_text(event.user_agent),
            event.klass,
            json.dumps(list(event.reasons)),
            clean_text(event.url),
            event.link_index,
            int(event.inferred),
            json.dumps(event.extra),
        ),
    )
    row_id = cursor.lastrowid
    assert row_id is not None
    return row_id


def ensure_secret(conn: sqlite3.Connection) -> list[str]:
    """Create the first key only if there is none (another process may have just made one)."""
    conn.execute(
        "INSERT INTO secrets (key, created_at)"
        " SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM secrets)",
        (secrets.token_urlsafe(32), time.time()),
    )
    return read_secrets(conn)


def read_secrets(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT key FROM secrets ORDER BY created_at DESC, id DESC").fetchall()
    return [str(row[0]) for row in rows]


def _require_copy(conn: sqlite3.Connection, copy_id: int) -> None:
    if conn.execute("SELECT 1 FROM copies WHERE id = ?", (copy_id,)).fetchone() is None:
        raise ValueError(f"no copy {copy_id}")
