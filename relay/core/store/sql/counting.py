"""Which stored events count: every raw event is kept, the reports count fewer.

Opens of one copy in one class that follow each other within OPEN_WINDOW
seconds are one open (a mail client re-renders, a reader scrolls back, a
proxy refetches): each open counts only when it comes more than
OPEN_WINDOW after the previous one of its copy and class. Clicks and
replies count as they are. An inferred open counts as human (SPEC 8).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relay.core.store.sql.classes import COUNTED_CLASS, HUMAN, HUMAN_OPEN, PROXY, RECORDED_HUMAN
from relay.core.store.sql.dialect import json_text

OPEN_WINDOW = 60  # seconds


def counted_events(where: str) -> str:
    """A FROM-able subquery of the events matching ``where`` that count (bound parameters
    of ``where`` stay in order). Served by the covering index events_by_message."""
    return (
        "(SELECT message_id, kind, copy_id, klass, inferred, at, link_index, url FROM"
        " (SELECT message_id, kind, copy_id, klass, inferred, at, link_index, url,"
        f" at - LAG(at) OVER (PARTITION BY copy_id, kind, {COUNTED_CLASS} ORDER BY at) AS gap"
        f" FROM events WHERE {where}) AS spaced"
        f" WHERE kind != 'open' OR gap IS NULL OR gap > {OPEN_WINDOW}) AS counted"
    )


def maybe_opened(where: str) -> str:
    """Copies among the events matching ``where`` with a proxy open and no human open:
    "opened, maybe" (the proxy fetched the pixel; nobody can say whether a person read)."""
    human = f"{HUMAN_OPEN} AND {where}"
    return (
        "SELECT message_id, count(DISTINCT copy_id) FROM events"
        f" WHERE kind = 'open' AND {PROXY} AND {where}"
        f" AND copy_id NOT IN (SELECT copy_id FROM events WHERE {human}) GROUP BY message_id"
    )


def summary_counts(
    conn: sqlite3.Connection,
    ids: Sequence[str],
    open_keys: Sequence[str],
    click_keys: Sequence[str],
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Per message: opens and clicks by class (collapsed), unique_human copies, and for opens
    unique_maybe (copies opened only by a proxy: "opened, maybe")."""
    marks = ",".join("?" * len(ids))
    where = f"message_id IN ({marks})"
    opens = {
        mid: dict.fromkeys(open_keys, 0) | {"unique_human": 0, "unique_maybe": 0} for mid in ids
    }
    clicks = {mid: dict.fromkeys(click_keys, 0) | {"unique_human": 0} for mid in ids}
    for mid, kind, klass, n, inferred in conn.execute(
        f"SELECT message_id, kind, {COUNTED_CLASS} AS k, count(*), sum(inferred)"
        f" FROM {counted_events(where)} GROUP BY message_id, kind, k",
        ids,
    ):
        if kind == "reply":
            continue
        counts = opens[mid] if kind == "open" else clicks[mid]
        counts[klass] = counts.get(klass, 0) + n
        if kind == "open":
            counts["inferred"] += inferred
    for mid, kind, n in conn.execute(
        "SELECT message_id, kind, count(DISTINCT copy_id) FROM events"
        f" WHERE {where} AND kind IN ('open', 'click') AND {HUMAN}"
        " GROUP BY message_id, kind",
        ids,
    ):
        (opens if kind == "open" else clicks)[mid]["unique_human"] = n
    for mid, n in conn.execute(maybe_opened(where), [*ids, *ids]):
        opens[mid]["unique_maybe"] = n
    return opens, clicks


def forwarded_copies(conn: sqlite3.Connection, message_id: str) -> set[int]:
    """Recipients' copies opened by people from clearly different clients: at least two
    user-agent families and two networks among the copy's human opens (SPEC 7).

    Two families and two networks always include a pair of opens that differ in
    both, so a reader whose phone changes network, or who opens at home and at
    work in the same client, is one reader; Outlook at one office and iPhone
    Mail at another is not. Proxy, bot, prefetch and self opens say nothing
    about who read, inferred opens carry no client, and a shared copy is
    opened by several people by design: none of them count.
    """
    family, network = json_text(conn, "extra", "ua_family"), json_text(conn, "extra", "network")
    rows = conn.execute(
        "SELECT copy_id FROM events WHERE message_id = ? AND kind = 'open'"
        f" AND {RECORDED_HUMAN} AND recipient IS NOT NULL AND {network} != ''"
        f" GROUP BY copy_id HAVING count(DISTINCT {family}) >= 2"
        f" AND count(DISTINCT {network}) >= 2",
        (message_id,),
    )
    return {int(copy_id) for (copy_id,) in rows}
