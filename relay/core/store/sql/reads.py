"""Simple reads and row -> model conversion, run in a read connection's thread."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any

from relay.core.models import Copy, Event, Message, TrackingDecision
from relay.core.store.sql.dialect import indexed_by

MESSAGE_COLUMNS = (
    "id, mail_from, rcpt_tos, received_at, client_addr, auth_user, sender, subject,"
    " message_id_header, decision"
)
COPY_COLUMNS = (
    "id, message_id, recipient, rcpt_tos, state, attempts, next_attempt_at, last_reply,"
    " queue_id, delivered_at, rewrite_note, rcpt_replies"
)
EVENT_COLUMNS = (
    "id, kind, copy_id, message_id, recipient, at, ip, user_agent, klass, reasons, url,"
    " link_index, inferred, extra"
)
_DECISION_FIELDS = {f.name for f in dataclasses.fields(TrackingDecision)}


def message_from_row(row: Any) -> Message:
    return Message(
        id=row[0],
        mail_from=row[1],
        rcpt_tos=tuple(json.loads(row[2])),
        received_at=row[3],
        client_addr=row[4],
        auth_user=row[5],
        sender=row[6],
        subject=row[7],
        message_id_header=row[8],
        decision=decision_from_json(row[9]),
    )


def decision_from_json(text: str) -> TrackingDecision:
    """Ignores fields this version does not know, so a newer writer cannot break a reader."""
    data = {k: v for k, v in json.loads(text).items() if k in _DECISION_FIELDS}
    data["reasons"] = tuple(data.get("reasons", ()))
    if data.get("exclude_links") is not None:
        data["exclude_links"] = tuple(data["exclude_links"])
    return TrackingDecision(**data)


def copy_from_row(row: Any) -> Copy:
    return Copy(
        id=row[0],
        message_id=row[1],
        recipient=row[2],
        rcpt_tos=tuple(json.loads(row[3])),
        state=row[4],
        attempts=row[5],
        next_attempt_at=row[6],
        last_reply=row[7],
        queue_id=row[8],
        delivered_at=row[9],
        rewrite_note=row[10],
        replies=_replies(row[11]),
    )


def _replies(text: str) -> dict[str, str]:
    """The per-recipient replies of a split shared copy; '{}' (nearly every copy) is cheap."""
    if not text or text == "{}":
        return {}
    return {str(k): str(v) for k, v in json.loads(text).items()}


def event_from_row(row: Any) -> Event:
    return Event(
        id=row[0],
        kind=row[1],
        copy_id=row[2],
        message_id=row[3],
        recipient=row[4],
        at=row[5],
        ip=row[6],
        user_agent=row[7],
        klass=row[8],
        reasons=tuple(json.loads(row[9])),
        url=row[10],
        link_index=row[11],
        inferred=bool(row[12]),
        extra=dict(json.loads(row[13])),
    )


def get_message(conn: sqlite3.Connection, message_id: str) -> Message | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return None if row is None else message_from_row(row)


def load_raw(conn: sqlite3.Connection, message_id: str) -> bytes | None:
    """None for an unknown message, and for one whose body was released (store/sql/bodies.py)."""
    row = conn.execute("SELECT raw, body FROM messages WHERE id = ?", (message_id,)).fetchone()
    return None if row is None or row[1] == "released" else bytes(row[0])


def load_message(conn: sqlite3.Connection, message_id: str) -> tuple[Message, bytes] | None:
    """get_message and load_raw in one statement (delivery reads both for every message);
    None for an unknown message, and for one whose body was released."""
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS}, raw, body FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None or row[-1] == "released":
        return None
    return message_from_row(row[:-2]), bytes(row[-2])


def get_copy(conn: sqlite3.Connection, copy_id: int) -> Copy | None:
    row = conn.execute(f"SELECT {COPY_COLUMNS} FROM copies WHERE id = ?", (copy_id,)).fetchone()
    return None if row is None else copy_from_row(row)


def due_copies(conn: sqlite3.Connection, now: float, limit: int) -> list[Copy]:
    """Served by the partial index copies_due."""
    rows = conn.execute(
        f"SELECT {COPY_COLUMNS} FROM copies{indexed_by(conn, 'copies_due')}"
        " WHERE state IN ('queued', 'deferred')"
        " AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    return [copy_from_row(r) for r in rows]


def list_events(
    conn: sqlite3.Connection, since_id: int, kind: str | None, recipient: str | None, limit: int
) -> list[Event]:
    where, params = ["id > ?"], list[object]([since_id])
    if kind is not None:
        where.append("kind = ?")
        params.append(kind)
    if recipient is not None:
        where.append("recipient = ?")
        params.append(recipient)
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?"
    rows = conn.execute(sql, (*params, limit)).fetchall()
    return [event_from_row(r) for r in rows]
