"""Events that change or follow other events: honeypot relabelling, inferred opens, replies.

Plain functions of a connection (sqlite3's, or the PostgreSQL adapter). The
write ones run inside a writer's batch transaction (the store's own writer, or
the event writer process: sqlite/hitproc.py, postgres/hitproc.py), each as one
op that is undone alone when it fails (a SAVEPOINT on SQLite; on PostgreSQL the
batch runs again with one per op), so a reply and its inferred open land
together or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence

from relay.core.models import Event
from relay.core.store.sql.classes import HUMAN_OPEN, NOT_INFERRED
from relay.core.store.sql.writes import clean_text, insert_event

MAX_REFERENCED = 50  # Message-IDs looked up per outgoing message
MAX_REPLY_RECIPIENTS = 500  # the SMTP front's own max_recipients default
MAX_RELABEL = 10_000  # events of one client on one message; more is a flood, not a reader


def has_human_open(conn: sqlite3.Connection, copy_id: int, before: float) -> bool:
    """Whether the copy has a human (or inferred) open at or before ``before``."""
    row = conn.execute(
        f"SELECT 1 FROM events WHERE copy_id = ? AND {HUMAN_OPEN} AND at <= ? LIMIT 1",
        (copy_id, before),
    ).fetchone()
    return row is not None


def mark_client_bot(
    conn: sqlite3.Connection, message_id: str, ip: str, user_agent: str, reason: str
) -> int:
    """Relabel this client's other events of the message as bot, adding ``reason``.

    The earlier class stays visible in the reasons (``was:human``), so an
    operator can see what the honeypot changed. Returns how many were changed.
    """
    rows = conn.execute(
        "SELECT id, klass, reasons FROM events WHERE message_id = ? AND ip = ?"
        f" AND user_agent = ? AND klass != 'bot' AND {NOT_INFERRED} LIMIT ?",
        (message_id, clean_text(ip), clean_text(user_agent), MAX_RELABEL),
    ).fetchall()
    updates = []
    for event_id, klass, reasons_json in rows:
        reasons = [reason, f"was:{klass}", *json.loads(reasons_json)]
        updates.append((json.dumps(list(dict.fromkeys(reasons))), event_id))
    conn.executemany("UPDATE events SET klass = 'bot', reasons = ? WHERE id = ?", updates)
    return len(updates)


def record_hit(conn: sqlite3.Connection, event: Event, relabel_client: bool) -> list[Event]:
    """Store a tracking event; returns it and whatever it caused, with their ids.

    The recipient is the copy's own at this moment, so an erased copy (its
    recipient removed) records "someone" whatever a cache elsewhere remembers.
    A human click with no earlier human open adds an inferred open; a
    honeypot hit (``relabel_client``) turns the client's other events of the
    message into bot ones. One write op: the check and the insert agree.
    """
    row = conn.execute("SELECT recipient FROM copies WHERE id = ?", (event.copy_id,)).fetchone()
    if row is None:
        raise ValueError(f"no copy {event.copy_id}")
    event = dataclasses.replace(event, recipient=row[0])
    if relabel_client:
        mark_client_bot(conn, event.message_id, event.ip, event.user_agent, "honeypot")
    stored = [_stored(conn, event)]
    if (
        event.kind == "click"
        and event.klass == "human"
        and not has_human_open(conn, event.copy_id, event.at)
    ):
        stored.append(_stored(conn, inferred_open(event, "inferred:click")))
    return stored


def inferred_open(cause: Event, reason: str) -> Event:
    return Event(
        kind="open",
        copy_id=cause.copy_id,
        message_id=cause.message_id,
        recipient=cause.recipient,
        at=cause.at,
        ip=cause.ip,
        user_agent=cause.user_agent,
        klass="human",
        reasons=(reason,),
        inferred=True,
    )


def record_replies(
    conn: sqlite3.Connection, referenced: Sequence[str], rcpt_tos: Sequence[str], at: float
) -> list[Event]:
    """Reply events for tracked messages named in ``referenced`` that went to one of ``rcpt_tos``.

    Each such recipient's copy (or the shared copy, for "someone") gets a
    ``reply`` event, and an inferred open when it had no human open yet.
    Returns the events stored.
    """
    ids = [i for i in dict.fromkeys(referenced) if i][:MAX_REFERENCED]
    wanted = {a.strip().lower() for a in rcpt_tos[:MAX_REPLY_RECIPIENTS] if a.strip()}
    if not ids or not wanted:
        return []
    marks = ",".join("?" * len(ids))
    stored: list[Event] = []
    for copy_id, message_id, recipient, copy_rcpts in conn.execute(
        "SELECT c.id, c.message_id, c.recipient, c.rcpt_tos FROM copies c"
        f" JOIN messages m ON m.id = c.message_id WHERE m.message_id_header IN ({marks})",
        ids,
    ).fetchall():
        to = {a.lower() for a in json.loads(copy_rcpts)}
        if not to & wanted:
            continue
        reply = Event("reply", copy_id, message_id, recipient, at, "", "", reasons=("reply",))
        stored.append(_stored(conn, reply))
        if not has_human_open(conn, copy_id, at):
            stored.append(_stored(conn, inferred_open(reply, "inferred:reply")))
    return stored


def _stored(conn: sqlite3.Connection, event: Event) -> Event:
    event_id = insert_event(conn, event)
    return dataclasses.replace(event, id=event_id)
