"""Tags and search: a message's tags, the tags list, a tag's campaign report, the
mail clients that opened, and the conditions that narrow the messages list.

Tags live in message_tags (schema step 9), one row per message and tag, keyed by
the tag folded to lower case in Python (``tag_key``), so both engines compare
them the same way, whatever their own lower() does with non-ASCII letters. A
tag's messages are an index range (message_tags_by_tag: tag_key, message_id),
and message ids sort by time, so a date range is an id range within it. Every
count over the tag's events is then served by events_by_message, per message.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from relay.core.models import (
    MAX_TAG_CHARS,
    MAX_TAGS,
    ClientOpen,
    MessageFilter,
    TagReport,
    TagSummary,
)
from relay.core.store.sql.classes import HUMAN, PROXY, READER_AGENT, on
from relay.core.store.sql.privacy import quoted_pattern

MAX_LINKS = 200  # links in a tag's report, most clicked first
MAX_WORDS = 8  # of a search's q
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ID_FLOOR, ID_CEILING = "", "g"  # below and above every message id (lower-case hex)


def tag_key(tag: str) -> str:
    """What tags are compared by: case-insensitive, the same on both engines."""
    return tag.strip().casefold()


def insert_tags(conn: sqlite3.Connection, message_id: str, tags: Iterable[str]) -> None:
    """At spool time, in the message's transaction; duplicates (by key) and blanks dropped."""
    rows: dict[str, tuple[str, str, str]] = {}
    for tag in tags:
        text = " ".join(_CONTROL.sub("", str(tag)).split())[:MAX_TAG_CHARS]
        key = tag_key(text)
        if key and key not in rows and len(rows) < MAX_TAGS:
            rows[key] = (message_id, text, key)
    if rows:
        conn.executemany(
            "INSERT INTO message_tags (message_id, tag, tag_key) VALUES (?, ?, ?)",
            list(rows.values()),
        )


def tags_of(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The tags of these messages, each message's in alphabetical order of their key."""
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    found: dict[str, list[str]] = {}
    for mid, tag in conn.execute(
        f"SELECT message_id, tag FROM message_tags WHERE message_id IN ({marks})"
        " ORDER BY message_id, tag_key",
        list(ids),
    ):
        found.setdefault(mid, []).append(tag)
    return {mid: tuple(tags) for mid, tags in found.items()}


def received_at_of(message_id: str) -> float:
    """When a message was received, from its id (12 hex digits of milliseconds first)."""
    return int(message_id[:12], 16) / 1000


def list_tags(conn: sqlite3.Connection, limit: int) -> list[TagSummary]:
    """Each tag spelled as its newest message spelled it (message_tags_by_tag, then the
    primary key)."""
    rows = conn.execute(
        "SELECT t.tag, g.n, g.newest FROM (SELECT tag_key, count(*) AS n,"
        " max(message_id) AS newest FROM message_tags GROUP BY tag_key) AS g"
        " JOIN message_tags t ON t.message_id = g.newest AND t.tag_key = g.tag_key"
        " ORDER BY g.newest DESC, g.tag_key LIMIT ?",
        (limit,),
    ).fetchall()
    return [TagSummary(tag, int(n), received_at_of(newest)) for tag, n, newest in rows]


def _tagged(key: str, since_id: str, until_id: str) -> tuple[str, list[Any]]:
    """The tag's message ids in an id range, as an IN-able subquery and its parameters."""
    return (
        "SELECT message_id FROM message_tags WHERE tag_key = ? AND message_id >= ?"
        " AND message_id < ?",
        [key, since_id, until_id],
    )


def _ratio(part: int, whole: int) -> float:
    return 0.0 if whole <= 0 else round(min(1.0, part / whole), 4)


# Copies with a proxy open and no human one ("opened, maybe", as counting.maybe_opened
# says), each proxy open checked against its own copy's opens (events_by_message):
# PostgreSQL turns maybe_opened's NOT IN into a scan of every open.
_MAYBE = (
    "SELECT count(DISTINCT e.copy_id) FROM events e WHERE e.message_id IN ({tagged})"
    f" AND e.kind = 'open' AND {on('e', PROXY)}"
    " AND NOT EXISTS (SELECT 1 FROM events h WHERE h.message_id = e.message_id"
    f" AND h.kind = 'open' AND h.copy_id = e.copy_id AND {on('h', HUMAN)})"
)


def tag_report(
    conn: sqlite3.Connection, tag: str, since_id: str, until_id: str
) -> TagReport | None:
    """Counts over the tag's messages with ids in [since_id, until_id) (store/sql/history.py
    id_bound turns times into ids). Unique opens and clicks are copies; recipients,
    delivered and bounced count addresses (a shared copy's every recipient)."""
    key = tag_key(tag)
    tagged, params = _tagged(key, since_id, until_id)
    row = conn.execute(
        "SELECT count(*), max(message_id) FROM message_tags WHERE tag_key = ?"
        " AND message_id >= ? AND message_id < ?",
        params,
    ).fetchone()
    if row is None or not row[0]:
        return None
    messages = int(row[0])
    spelled = conn.execute(
        "SELECT tag FROM message_tags WHERE message_id = ? AND tag_key = ?", (row[1], key)
    ).fetchone()[0]
    recipients, by_state = _addresses(conn, tagged, params)
    unique, maybe = _unique_copies(conn, tagged, params)
    links = tuple(
        (str(url), int(n))
        for url, n in conn.execute(
            f"SELECT url, count(DISTINCT copy_id) AS n FROM events WHERE message_id IN ({tagged})"
            f" AND kind = 'click' AND {HUMAN} GROUP BY url ORDER BY n DESC, url LIMIT ?",
            [*params, MAX_LINKS],
        )
    )
    delivered = by_state["delivered"]
    return TagReport(
        tag=spelled,
        messages=messages,
        recipients=recipients,
        delivered=delivered,
        bounced=by_state["bounced"],
        opens={"unique_human": unique["open"], "unique_maybe": maybe},
        clicks={"unique_human": unique["click"]},
        open_rate=_ratio(unique["open"], delivered),
        proxy_rate=_ratio(maybe, delivered),
        click_rate=_ratio(unique["click"], delivered),
        click_to_open=_ratio(unique["click"], unique["open"]),
        links=links,
    )


def _addresses(
    conn: sqlite3.Connection, tagged: str, params: list[Any]
) -> tuple[int, dict[str, int]]:
    """Recipients of the tagged messages' copies, and of those delivered and bounced."""
    recipients, by_state = 0, {"delivered": 0, "bounced": 0}
    for state, rcpt_tos in conn.execute(
        f"SELECT state, rcpt_tos FROM copies WHERE message_id IN ({tagged})", params
    ):
        n = len(json.loads(rcpt_tos))
        recipients += n
        if state in by_state:
            by_state[state] += n
    return recipients, by_state


def _unique_copies(
    conn: sqlite3.Connection, tagged: str, params: list[Any]
) -> tuple[dict[str, int], int]:
    """Copies with a human open and with a human click; copies opened only by a proxy."""
    unique = {}
    for kind in ("open", "click"):  # one kind each: events_by_message (message_id, kind)
        row = conn.execute(
            f"SELECT count(DISTINCT copy_id) FROM events WHERE message_id IN ({tagged})"
            f" AND kind = ? AND {HUMAN}",
            [*params, kind],
        ).fetchone()
        unique[kind] = int(row[0]) if row else 0
    row = conn.execute(_MAYBE.format(tagged=tagged), params).fetchone()
    return unique, int(row[0]) if row else 0


_CLIENT_OPENS = (
    "SELECT copy_id, klass, user_agent, reasons, count(*) FROM events WHERE {scope}"
    f" AND kind = 'open' AND {READER_AGENT}"
    " GROUP BY copy_id, klass, user_agent, reasons"
)


def _client_opens(rows: Iterable[Any]) -> list[ClientOpen]:
    return [
        ClientOpen(int(copy_id), klass, agent, tuple(json.loads(reasons)), int(n))
        for copy_id, klass, agent, reasons, n in rows
    ]


def message_clients(conn: sqlite3.Connection, message_id: str) -> list[ClientOpen]:
    sql = _CLIENT_OPENS.format(scope="message_id = ?")
    return _client_opens(conn.execute(sql, (message_id,)))


def tag_clients(
    conn: sqlite3.Connection, tag: str, since_id: str, until_id: str
) -> list[ClientOpen]:
    tagged, params = _tagged(tag_key(tag), since_id, until_id)
    sql = _CLIENT_OPENS.format(scope=f"message_id IN ({tagged})")
    return _client_opens(conn.execute(sql, params))


def _like(word: str) -> str:
    """A LIKE pattern (ESCAPE '\\') matching the word anywhere."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Most copies end delivered: those are found by walking messages newest first and looking
# at each one's copies (copies_by_message; ``state || ''`` keeps SQLite off copies_by_state)
# until a page is full. Queued, deferred and bounced copies are few: their message ids
# come from copies_by_state.
_STATE_DELIVERED = (
    "EXISTS (SELECT 1 FROM copies c WHERE c.message_id = messages.id AND c.state || '' = ?)"
)
_STATE_FEW = "id IN (SELECT message_id FROM copies WHERE state = ?)"


# A recipient's messages: their copies of their own (copies_by_recipient), and shared
# copies whose recipient list names them (the NULL key of the same index, then the list).
_TO_ADDRESS = (
    "id IN (SELECT message_id FROM copies WHERE recipient = ?"
    " UNION ALL SELECT message_id FROM copies WHERE recipient IS NULL"
    " AND lower(rcpt_tos) LIKE ? ESCAPE '\\')"
)


def _to_address(address: str) -> tuple[str, str]:
    return address, quoted_pattern(address.lower())


def search_filters(where: MessageFilter) -> list[tuple[str, tuple[object, ...]]]:
    """The conditions on messages for q, recipient, tag and state, with their values.

    Subject words: lower(subject) LIKE, scanned newest first (the list's order) until a
    page is full; addresses and tags: the indexes copies_by_recipient and
    message_tags_by_tag; states: see _STATE_DELIVERED."""
    found: list[tuple[str, tuple[object, ...]]] = []
    for word in (where.q or "").split()[:MAX_WORDS]:
        if "@" in word:
            found.append((f"(sender = ? OR {_TO_ADDRESS})", (word, *_to_address(word))))
        else:
            found.append(("lower(subject) LIKE ? ESCAPE '\\'", (_like(word.lower()),)))
    if where.recipient is not None:
        found.append((_TO_ADDRESS, _to_address(where.recipient)))
    if where.tag is not None:
        found.append(
            ("id IN (SELECT message_id FROM message_tags WHERE tag_key = ?)", (tag_key(where.tag),))
        )
    if where.state is not None:
        found.append(
            (_STATE_DELIVERED if where.state == "delivered" else _STATE_FEW, (where.state,))
        )
    return found


def tag_range(since: float | None, until: float | None) -> tuple[str, str]:
    """[since, until) as a range of message ids (None: unbounded)."""
    from relay.core.store.sql.history import id_bound  # history imports this module

    low = ID_FLOOR if since is None else id_bound(since)
    high = ID_CEILING if until is None else id_bound(until)
    return low, high
