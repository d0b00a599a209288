"""The webhook outbox's SQL: fan the trigger-filled queue out per endpoint, claim, settle.

Triggers (schema steps 4 and 5) put every event and delivery outcome into
webhook_queue in the statement that records it, while some HTTP role has
endpoints configured (``want_webhooks``), so nothing is lost between
"recorded" and "queued for webhooks", whichever process recorded it. The
dispatcher of the HTTP role turns queue rows into one outbox row per
matching endpoint (snapshotting the notice, so retention or a later change
cannot alter what a retry sends), claims due rows with a lease (a crashed
dispatcher's claims come due again: at-least-once), and settles them.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from collections.abc import Sequence

from relay.core.models import (
    WebhookDelivery,
    WebhookNotice,
    WebhookRow,
    WebhookTarget,
    is_machine,
)
from relay.core.store.sql.classes import MACHINE
from relay.core.store.sql.dialect import skip_locked
from relay.core.store.sql.reads import EVENT_COLUMNS, event_from_row

MAX_ERROR = 500


def notice_to_json(notice: WebhookNotice) -> str:
    return json.dumps(dataclasses.asdict(notice))


def notice_from_json(text: str) -> WebhookNotice:
    """Ignores fields this version does not know, so a newer writer cannot break a reader."""
    known = {f.name for f in dataclasses.fields(WebhookNotice)}
    data = {k: v for k, v in json.loads(text).items() if k in known}
    data["reasons"] = tuple(data.get("reasons", ()))
    return WebhookNotice(**data)


def want_webhooks(conn: sqlite3.Connection, wanted: bool) -> None:
    """Turn the queue triggers on or off (schema step 5): no webhooks, no queue rows."""
    conn.execute(
        "INSERT INTO settings (name, value) VALUES ('webhooks', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        ("on" if wanted else "off",),
    )


def fan_out(
    conn: sqlite3.Connection, targets: Sequence[WebhookTarget], limit: int, now: float
) -> int:
    """Move up to ``limit`` queued notices into the outbox; returns how many were consumed.

    A notice no endpoint wants, or whose event is gone (retention, erasure), is dropped.
    """
    rows = conn.execute(
        "SELECT id, kind, event_id, copy_id, at FROM webhook_queue ORDER BY id LIMIT ?"
        + skip_locked(conn),
        (limit,),
    ).fetchall()
    for _qid, kind, event_id, copy_id, at in rows:
        urls = list(dict.fromkeys(t.url for t in targets if kind in t.events))
        if not urls:
            continue
        notice = _notice(conn, kind, event_id, copy_id, at)
        if notice is None:
            continue
        text = notice_to_json(notice)
        conn.executemany(
            "INSERT INTO webhook_outbox (webhook_id, endpoint, notice, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?)",
            [(f"msg_{secrets.token_hex(12)}", url, text, now, now) for url in urls],
        )
    if rows:  # exactly these: with several writers, a lower id may commit later
        marks = ",".join("?" * len(rows))
        conn.execute(f"DELETE FROM webhook_queue WHERE id IN ({marks})", [r[0] for r in rows])
    return len(rows)


def _notice(
    conn: sqlite3.Connection, kind: str, event_id: int | None, copy_id: int, at: float
) -> WebhookNotice | None:
    if event_id is not None:
        return _event_notice(conn, event_id)
    row = conn.execute(
        "SELECT message_id, recipient, last_reply, attempts FROM copies WHERE id = ?", (copy_id,)
    ).fetchone()
    if row is None:
        return None
    message_id, recipient, reply, attempts = row
    first = kind != "deferred" or attempts <= 1
    return WebhookNotice(
        kind, at, message_id, recipient, reply=reply, attempts=attempts, first=first
    )


def _event_notice(conn: sqlite3.Connection, event_id: int) -> WebhookNotice | None:
    """``first``: no earlier event of this kind on this copy from the same side (person/machine)."""
    row = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        return None
    event = event_from_row(row)
    machine = is_machine(event.klass, event.inferred)
    side = MACHINE if machine else f"NOT ({MACHINE})"
    earlier = conn.execute(
        f"SELECT 1 FROM events WHERE copy_id = ? AND kind = ? AND id < ? AND {side} LIMIT 1",
        (event.copy_id, event.kind, event_id),
    ).fetchone()
    return WebhookNotice(
        kind=event.kind,
        at=event.at,
        message_id=event.message_id,
        recipient=event.recipient,
        event_id=event_id,
        url=event.url,
        klass=event.klass,
        inferred=event.inferred,
        first=earlier is None,
        reasons=event.reasons,
    )


def claim_due(
    conn: sqlite3.Connection, now: float, lease: float, limit: int
) -> list[WebhookDelivery]:
    """Due pending rows, each pushed ``lease`` seconds ahead so no one else takes it meanwhile."""
    rows = conn.execute(
        "SELECT id, webhook_id, endpoint, notice, attempts, created_at FROM webhook_outbox"
        " WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
        + skip_locked(conn),
        (now, limit),
    ).fetchall()
    conn.executemany(
        "UPDATE webhook_outbox SET next_attempt_at = ? WHERE id = ?",
        [(now + lease, r[0]) for r in rows],
    )
    return [WebhookDelivery(r[0], r[1], r[2], notice_from_json(r[3]), r[4], r[5]) for r in rows]


def settle(
    conn: sqlite3.Connection,
    delivery_id: int,
    delivered: bool,
    error: str,
    next_attempt_at: float | None,
) -> None:
    """Delivered rows go; a failure is retried at next_attempt_at, or kept as failed (None)."""
    if delivered:
        conn.execute("DELETE FROM webhook_outbox WHERE id = ?", (delivery_id,))
        return
    conn.execute(
        "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?,"
        " state = ?, next_attempt_at = COALESCE(?, next_attempt_at) WHERE id = ?",
        (
            error[:MAX_ERROR],
            "failed" if next_attempt_at is None else "pending",
            next_attempt_at,
            delivery_id,
        ),
    )


def list_rows(conn: sqlite3.Connection, state: str | None, limit: int) -> list[WebhookRow]:
    """Outbox rows (all, or those in one state), newest first: the webhooks page."""
    where, args = ("WHERE state = ?", (state,)) if state is not None else ("", ())
    rows = conn.execute(
        "SELECT id, webhook_id, endpoint, notice, attempts, created_at, state,"
        f" next_attempt_at, last_error FROM webhook_outbox {where} ORDER BY id DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [
        WebhookRow(
            WebhookDelivery(r[0], r[1], r[2], notice_from_json(r[3]), r[4], r[5]),
            str(r[6]),
            float(r[7]),
            str(r[8]),
        )
        for r in rows
    ]


def retry_rows(conn: sqlite3.Connection, delivery_ids: Sequence[int], now: float) -> int:
    """Make these rows pending and due now (a failed one too); returns how many there were.
    A row a dispatcher holds right now may then be sent twice: webhooks are at least once."""
    cursor = conn.executemany(
        "UPDATE webhook_outbox SET state = 'pending', next_attempt_at = ? WHERE id = ?",
        [(now, delivery_id) for delivery_id in delivery_ids],
    )
    return max(0, cursor.rowcount)


def outbox_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Notices not yet fanned out (queued), and outbox rows pending or failed."""
    counts = {"queued": 0, "pending": 0, "failed": 0}
    counts["queued"] = int(conn.execute("SELECT count(*) FROM webhook_queue").fetchone()[0])
    for state, n in conn.execute("SELECT state, count(*) FROM webhook_outbox GROUP BY state"):
        counts[str(state)] = int(n)
    return counts
