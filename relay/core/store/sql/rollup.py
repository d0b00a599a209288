"""Charts from the hourly rollup (event_hours, kept by triggers on events: schema step 4).

Counting the events of a 14-day window walks ~470k index entries at 1M
events (1.4 s); the rollup holds one row per hour, kind and class, so the
same chart sums a few hundred rows. It answers whole-hour windows over all
messages; one message's chart still counts its own events (few, and indexed).

On PostgreSQL the rollup is sharded (a column ``shard``: each server process
adds to its own rows, so concurrent writers never queue on one hot row; see
postgres/schema.py); SQLite's has one row per key. The query sums whatever
rows a key has, so it reads both.
"""

from __future__ import annotations

import sqlite3

from relay.core.models import EventBucket

HOUR = 3600


def covers(start: float, end: float, width: float) -> bool:
    """True when [start, end) in ``width`` buckets is made of whole UTC hours."""
    return all(value % HOUR == 0 for value in (start, end, width)) and width > 0


def hourly_histogram(
    conn: sqlite3.Connection, start: float, end: float, width: float
) -> list[EventBucket]:
    """history.event_histogram for all messages, when ``covers`` holds."""
    rows = conn.execute(
        "SELECT (hour - ?) / ? AS b, kind, klass, sum(n) FROM event_hours"
        " WHERE hour >= ? AND hour < ? GROUP BY b, kind, klass HAVING sum(n) > 0 ORDER BY b",
        (int(start) // HOUR, int(width) // HOUR, int(start) // HOUR, int(end) // HOUR),
    ).fetchall()
    return [EventBucket(start + b * width, kind, klass, int(n)) for b, kind, klass, n in rows]
