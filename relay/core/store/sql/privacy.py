"""Erasing one recipient, and the retention purge (SPEC section 3).

Rows are deleted or overwritten, never flagged: whatever reads events later
(reports, exports, webhooks) cannot show what is no longer there. What stays
is listed in the README ("What is counted, and how").
"""

from __future__ import annotations

import json
import sqlite3

from relay.core.store.sql.dialect import json_text

PENDING = "('queued', 'deferred')"
PURGE_BATCH = 1000  # rows per statement: one purge step never holds the writer for long
MAX_ERASE_MESSAGES = 1_000_000


def erase_recipient(conn: sqlite3.Connection, address: str) -> dict[str, int]:
    """Delete the address's events and unsent webhooks; take it out of copies and envelopes.

    A copy still waiting for delivery keeps its envelope (the mail must still
    go out) and is counted in ``pending_copies``: erase again once it is done.
    """
    wanted = address.strip().lower()
    pending = conn.execute(
        f"SELECT count(*) FROM copies WHERE lower(recipient) = ? AND state IN {PENDING}",
        (wanted,),
    ).fetchone()[0]
    events = conn.execute(
        "DELETE FROM events WHERE lower(recipient) = ?"
        f" AND copy_id NOT IN (SELECT id FROM copies WHERE state IN {PENDING})",
        (wanted,),
    ).rowcount
    webhooks = _drop_webhooks(conn, wanted)  # before the copies lose the address
    copies = conn.execute(
        "UPDATE copies SET recipient = NULL, rcpt_tos = '[]', last_reply = ''"
        f" WHERE lower(recipient) = ? AND state NOT IN {PENDING}",
        (wanted,),
    ).rowcount
    copies += _drop_address(conn, "copies", wanted, f"state NOT IN {PENDING}")
    _drop_address(conn, "copies", wanted, f"state NOT IN {PENDING}", "rcpt_replies")
    messages = _drop_address(conn, "messages", wanted, "1 = 1")
    return {
        "events": events,
        "copies": copies,
        "messages": messages,
        "pending_copies": int(pending),
        "webhooks": webhooks,
    }


def _drop_webhooks(conn: sqlite3.Connection, address: str) -> int:
    """Notices not yet sent about the address, so erased data never leaves afterwards.

    Queued ones (not yet fanned out) of any of its copies, pending copies
    included; outbox rows (pending or failed) whose snapshot names it.
    """
    queued = conn.execute(
        "DELETE FROM webhook_queue"
        " WHERE copy_id IN (SELECT id FROM copies WHERE lower(recipient) = ?)",
        (address,),
    ).rowcount
    recipient = json_text(conn, "notice", "recipient")
    outbox = conn.execute(
        f"DELETE FROM webhook_outbox WHERE lower({recipient}) = ?", (address,)
    ).rowcount
    return int(queued) + int(outbox)


def quoted_pattern(address: str) -> str:
    """A LIKE pattern (ESCAPE '\\') for the (lower-case) address as a JSON string anywhere
    in a column; matched against lower(column), since PostgreSQL's LIKE, unlike SQLite's,
    tells case apart."""
    escaped = address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"{escaped}"%'


def _drop_address(
    conn: sqlite3.Connection, table: str, address: str, where: str, column: str = "rcpt_tos"
) -> int:
    """Remove the address from the JSON ``column`` of ``table`` rows (keyed by id): a
    rcpt_tos list, or the rcpt_replies object of a split shared copy (schema step 6),
    whose keys are the addresses; returns rows changed."""
    rows = conn.execute(
        f"SELECT id, {column} FROM {table} WHERE lower({column}) LIKE ? ESCAPE '\\'"
        f" AND {where} LIMIT ?",
        (quoted_pattern(address), MAX_ERASE_MESSAGES),
    ).fetchall()
    changed = []
    for row_id, text in rows:
        found = json.loads(text)
        kept = [a for a in found if a.strip().lower() != address]
        if len(kept) != len(found):
            changed.append((json.dumps(_same_kind(found, kept)), row_id))
    conn.executemany(f"UPDATE {table} SET {column} = ? WHERE id = ?", changed)
    return len(changed)


def _same_kind(found: list[str] | dict[str, str], kept: list[str]) -> object:
    """The kept addresses as ``found`` held them: a list, or an object keyed by them."""
    return {a: found[a] for a in kept} if isinstance(found, dict) else kept


def purge_step(conn: sqlite3.Connection, cutoff: float) -> dict[str, int]:
    """Delete up to PURGE_BATCH events and messages older than ``cutoff``; call until zero.

    A message with a copy still waiting for delivery is kept whatever its age.
    Deleting a message deletes its copies, links and events (foreign keys).
    """
    events = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE at < ? LIMIT ?)",
        (cutoff, PURGE_BATCH),
    ).rowcount
    messages = conn.execute(
        "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE received_at < ?"
        f" AND NOT EXISTS (SELECT 1 FROM copies WHERE copies.message_id = messages.id"
        f" AND copies.state IN {PENDING}) LIMIT ?)",
        (cutoff, PURGE_BATCH),
    ).rowcount
    return {"events": events, "messages": messages}
