"""Reads for the JSON API and the live feed that the reports do not cover."""

from __future__ import annotations

import sqlite3

from relay.core.store.sql.classes import COUNTED_CLASS


def last_event_id(conn: sqlite3.Connection) -> int:
    """Where a new live feed starts (the primary key's last entry: no scan)."""
    row = conn.execute("SELECT max(id) FROM events").fetchone()
    return int(row[0] or 0)


def contact_counts(conn: sqlite3.Connection, address: str) -> dict[str, dict[str, int]]:
    """Events of one address by type and class, across messages (events_by_recipient)."""
    counts: dict[str, dict[str, int]] = {"open": {}, "click": {}, "reply": {}}
    for kind, klass, n in conn.execute(
        f"SELECT kind, {COUNTED_CLASS} AS k, count(*) FROM events WHERE recipient = ?"
        " GROUP BY kind, k",
        (address,),
    ):
        counts.setdefault(str(kind), {})[str(klass)] = int(n)
    return counts
