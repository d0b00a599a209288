"""Aggregate reads for the admin views: the messages list and one message's report.

Counting rules (SPEC 7, 8): an inferred open is counted as "human" and also in
"inferred"; first_open/last_open span human opens, inferred ones included
(proxy and bot fetches say nothing about when a person read the mail). Every
query is bounded by a page of message ids or one message id, and is served by
the covering index events_by_message.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.core.models import (
    Copy,
    LinkReport,
    MessageReport,
    MessageSummary,
    RecipientReport,
)
from relay.core.store.sql.classes import COUNTED_CLASS
from relay.core.store.sql.counting import counted_events, forwarded_copies, summary_counts
from relay.core.store.sql.reads import (
    COPY_COLUMNS,
    MESSAGE_COLUMNS,
    copy_from_row,
    message_from_row,
)
from relay.core.store.sql.tags import tags_of

OPEN_KEYS = ("human", "inferred", "proxy", "bot", "prefetch", "self")
CLICK_KEYS = ("human", "bot", "prefetch", "self")
MAX_CURSOR = 200
_ID = re.compile(r"[0-9a-f]{1,64}")


def encode_cursor(message_id: str) -> str:
    return base64.urlsafe_b64encode(message_id.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> str:
    """The id after which the next page starts; ValueError for anything we did not issue."""
    if len(cursor) > MAX_CURSOR or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise ValueError("invalid cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("invalid cursor") from None
    if not _ID.fullmatch(text):
        raise ValueError("invalid cursor")
    return text


def list_messages(
    conn: sqlite3.Connection,
    limit: int,
    after_id: str | None,
    filters: Sequence[tuple[str, object]] = (),
) -> tuple[list[MessageSummary], str | None]:
    """filters: extra ``(constant SQL condition, bound value)`` pairs, e.g. by sender; a
    tuple value binds each of its items in turn (a condition with several ``?``)."""
    clauses = [("id < ?", after_id), *filters] if after_id else list(filters)
    where = "WHERE " + " AND ".join(c for c, _ in clauses) if clauses else ""
    params = tuple(
        item for _, value in clauses for item in (value if isinstance(value, tuple) else (value,))
    )
    rows = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages {where} ORDER BY id DESC LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    messages = [message_from_row(r) for r in rows[:limit]]
    next_cursor = encode_cursor(messages[-1].id) if len(rows) > limit else None
    ids = [m.id for m in messages]
    if not ids:
        return [], None
    marks = ",".join("?" * len(ids))
    states: dict[str, dict[str, int]] = defaultdict(dict)
    for mid, state, n in conn.execute(
        f"SELECT message_id, state, count(*) FROM copies WHERE message_id IN ({marks})"
        " GROUP BY message_id, state",
        ids,
    ):
        states[mid][state] = n
    opens, clicks = summary_counts(conn, ids, OPEN_KEYS, CLICK_KEYS)
    tags = tags_of(conn, ids)
    page = [
        MessageSummary(
            dataclasses.replace(m, tags=tags.get(m.id, ())),
            len(m.rcpt_tos),
            states[m.id],
            opens[m.id],
            clicks[m.id],
            open_rate=rate(opens[m.id]["unique_human"], states[m.id].get("delivered", 0)),
            click_rate=rate(clicks[m.id]["unique_human"], states[m.id].get("delivered", 0)),
        )
        for m in messages
    ]
    return page, next_cursor


def rate(part: int, delivered: int) -> float:
    """part / delivered, at most 1.0, rounded to 4 places; 0.0 when nothing was delivered."""
    return 0.0 if delivered <= 0 else round(min(1.0, part / delivered), 4)


@dataclass
class _Tally:
    """One copy's (or "someone"'s) counts while the report is built."""

    opens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPEN_KEYS, 0))
    clicks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CLICK_KEYS, 0))
    first_open: float | None = None
    last_open: float | None = None
    links: dict[int, tuple[str, dict[str, int]]] = field(default_factory=dict)
    replies: int = 0
    forwarded: bool = False

    def add_open(self, klass: str, inferred: bool, n: int, first: float, last: float) -> None:
        self.opens[klass] = self.opens.get(klass, 0) + n
        if inferred:
            self.opens["inferred"] += n
        if klass == "human":
            self.first_open = first if self.first_open is None else min(self.first_open, first)
            self.last_open = last if self.last_open is None else max(self.last_open, last)

    def link(self, index: int, url: str) -> dict[str, int]:
        if index not in self.links:
            self.links[index] = (url, dict.fromkeys(CLICK_KEYS, 0))
        return self.links[index][1]

    def report(self, address: str | None, copy: Copy | None) -> RecipientReport:
        links = tuple(
            LinkReport(url, counts | {"unique_human": int(counts.get("human", 0) > 0)})
            for _, (url, counts) in sorted(self.links.items())
        )
        opens, clicks = self.opens, self.clicks
        return RecipientReport(
            address,
            copy,
            opens,
            clicks,
            self.first_open,
            self.last_open,
            links,
            self.replies,
            self.forwarded,
        )


def message_links(tallies: Sequence[_Tally]) -> tuple[LinkReport, ...]:
    """Each link over all copies: clicks by class summed, unique_human = copies (recipients,
    or "someone" once) with a human click on it. Keyed by index and URL: every copy of a
    message is rewritten from the same body, so an index is the same link in each."""
    merged: dict[tuple[int, str], dict[str, int]] = {}
    for tally in tallies:
        for index, (url, counts) in tally.links.items():
            total = merged.setdefault((index, url), dict.fromkeys(CLICK_KEYS, 0))
            for klass, n in counts.items():
                total[klass] = total.get(klass, 0) + n
            total["unique_human"] = total.get("unique_human", 0) + int(counts.get("human", 0) > 0)
    return tuple(LinkReport(url, counts) for (_, url), counts in sorted(merged.items()))


def message_report(conn: sqlite3.Connection, message_id: str) -> MessageReport | None:
    row = conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        return None
    copies = [
        copy_from_row(r)
        for r in conn.execute(
            f"SELECT {COPY_COLUMNS} FROM copies WHERE message_id = ? ORDER BY id", (message_id,)
        )
    ]
    someone = _Tally()
    tallies = {c.id: (_Tally() if c.recipient is not None else someone) for c in copies}
    _tally_events(conn, message_id, tallies)
    for copy_id in forwarded_copies(conn, message_id):
        tally = tallies.get(copy_id)
        if tally is not None and tally is not someone:
            tally.forwarded = True
    recipients: list[RecipientReport] = []
    for copy in copies:
        if copy.recipient is not None:
            recipients.append(tallies[copy.id].report(copy.recipient, copy))
        else:  # a shared copy: the addresses and their state, counts go to "someone"
            recipients.extend(
                _Tally().report(address, own_copy(copy, address)) for address in copy.rcpt_tos
            )
    shared = next((c for c in copies if c.recipient is None), None)
    distinct = list({id(t): t for t in tallies.values()}.values())
    return MessageReport(
        dataclasses.replace(
            message_from_row(row), tags=tags_of(conn, [message_id]).get(message_id, ())
        ),
        tuple(recipients),
        someone.report(None, shared),
        message_links(distinct),
    )


def own_copy(copy: Copy, address: str) -> Copy:
    """A shared copy as one of its recipients saw it: with that recipient's own reply."""
    reply = copy.replies.get(address)
    if reply is None:
        return copy
    return dataclasses.replace(copy, last_reply=reply, replies={})


def _tally_events(conn: sqlite3.Connection, message_id: str, tallies: dict[int, _Tally]) -> None:
    for copy_id, idx, url in conn.execute(
        "SELECT copy_id, idx, url FROM links"
        " WHERE copy_id IN (SELECT id FROM copies WHERE message_id = ?)"
        " UNION ALL SELECT c.id, l.idx, l.url FROM copies c"
        " JOIN message_links l ON l.message_id = c.message_id"
        " WHERE c.message_id = ? AND c.links_shared != 0 ORDER BY 1, 2",
        (message_id, message_id),
    ):
        tallies[copy_id].link(idx, url)
    for copy_id, klass, inferred, n, first, last in conn.execute(
        f"SELECT copy_id, {COUNTED_CLASS} AS k, inferred, count(*), min(at), max(at)"
        f" FROM {counted_events('message_id = ?')} WHERE kind = 'open'"
        " GROUP BY copy_id, k, inferred",
        (message_id,),
    ):
        if copy_id in tallies:
            tallies[copy_id].add_open(klass, bool(inferred), n, first, last)
    for copy_id, n in conn.execute(
        "SELECT copy_id, count(*) FROM events WHERE message_id = ? AND kind = 'reply'"
        " GROUP BY copy_id",
        (message_id,),
    ):
        if copy_id in tallies:
            tallies[copy_id].replies += n
    for copy_id, link_index, klass, n, url in conn.execute(
        f"SELECT copy_id, link_index, {COUNTED_CLASS} AS k, count(*), max(url) FROM events"
        " WHERE message_id = ? AND kind = 'click' GROUP BY copy_id, link_index, k",
        (message_id,),
    ):
        tally = tallies.get(copy_id)
        if tally is None:
            continue
        tally.clicks[klass] = tally.clicks.get(klass, 0) + n
        if link_index is not None:
            counts = tally.link(link_index, url)
            counts[klass] = counts.get(klass, 0) + n
