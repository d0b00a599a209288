"""Reads for browsing the history: filtered message pages, timelines, contacts, charts.

Every query is bounded (a page, one message, one address or a time window)
and served by an index: messages_by_sender and the id primary key (ids sort
by time) for the filtered list, events_by_message for a message's timeline,
events_by_recipient and copies_by_recipient for a contact, events_by_time and
events_by_message for the charts.
"""

from __future__ import annotations

import sqlite3

from relay.core.models import (
    ContactReport,
    Event,
    EventBucket,
    MessageFilter,
    MessageSummary,
)
from relay.core.store.sql import reports, rollup, tags
from relay.core.store.sql.classes import COUNTED_CLASS, HUMAN
from relay.core.store.sql.dialect import whole
from relay.core.store.sql.reads import (
    COPY_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    copy_from_row,
    event_from_row,
    message_from_row,
)


def id_bound(ts: float) -> str:
    """The smallest message id received at ``ts`` or later (ids start with hex milliseconds)."""
    millis = max(0, min(int(ts * 1000), 16**12 - 1))
    return f"{millis:012x}"


def find_messages(
    conn: sqlite3.Connection, limit: int, after_id: str | None, where: MessageFilter
) -> tuple[list[MessageSummary], str | None]:
    """The messages list narrowed by sender, date and search (store/sql/tags.py); a date
    range is an id range."""
    filters: list[tuple[str, object]] = []
    if where.sender is not None:
        filters.append(("sender = ?", where.sender))
    if where.since is not None:
        filters.append(("id >= ?", id_bound(where.since)))
    if where.until is not None:
        filters.append(("id < ?", id_bound(where.until)))
    filters.extend(tags.search_filters(where))
    return reports.list_messages(conn, limit, after_id, filters)


def message_events(conn: sqlite3.Connection, message_id: str, limit: int) -> list[Event]:
    """One message's events, oldest first (the first ``limit`` of them)."""
    rows = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE message_id = ? ORDER BY at, id LIMIT ?",
        (message_id, limit),
    ).fetchall()
    return [event_from_row(r) for r in rows]


def contact_report(conn: sqlite3.Connection, address: str, limit: int) -> ContactReport | None:
    """None when nothing was ever sent to the address in a copy of its own."""
    copies = [
        copy_from_row(r)
        for r in conn.execute(
            f"SELECT {COPY_COLUMNS} FROM copies WHERE recipient = ? ORDER BY id DESC LIMIT ?",
            (address, limit),
        )
    ]
    if not copies:
        return None
    ids = sorted({c.message_id for c in copies})
    marks = ",".join("?" * len(ids))
    messages = {
        m.id: m
        for m in map(
            message_from_row,
            conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks})", ids),
        )
    }
    last = {
        kind: at
        for kind, at in conn.execute(
            f"SELECT kind, max(at) FROM events WHERE recipient = ? AND (kind = 'reply' OR {HUMAN})"
            " GROUP BY kind",
            (address,),
        )
    }
    events = [
        event_from_row(r)
        for r in conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE recipient = ? ORDER BY id DESC LIMIT ?",
            (address, limit),
        )
    ]
    return ContactReport(
        address=address,
        deliveries=tuple((messages[c.message_id], c) for c in copies if c.message_id in messages),
        last_open=last.get("open"),
        last_click=last.get("click"),
        last_reply=last.get("reply"),
        events=tuple(events),
    )


def event_histogram(
    conn: sqlite3.Connection, start: float, end: float, width: float, message_id: str | None
) -> list[EventBucket]:
    """Counts per ``width``-second bucket of [start, end), by kind and class.

    Whole-hour windows over all messages (the charts page) read the hourly rollup.
    """
    if message_id is None and rollup.covers(start, end, width):
        return rollup.hourly_histogram(conn, start, end, width)
    bucket = whole(conn, "(at - ?) / ?")
    params: tuple[object, ...]
    if message_id is None:
        scope, params = "at >= ? AND at < ?", (start, end)
    else:
        scope, params = "message_id = ? AND at >= ? AND at < ?", (message_id, start, end)
    rows = conn.execute(
        f"SELECT {bucket} AS b, kind, {COUNTED_CLASS} AS k, count(*) FROM events"
        f" WHERE {scope} GROUP BY b, kind, k ORDER BY b",
        (start, width, *params),
    ).fetchall()
    return [EventBucket(start + b * width, kind, klass, n) for b, kind, klass, n in rows]
