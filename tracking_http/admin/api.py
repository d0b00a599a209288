"""The JSON API of the admin listener (SPEC section 8).

The store computes the counts (MessageSummary, MessageReport); this module
only checks parameters and formats them into the documented shapes, with
every count key present (zero when nothing happened) so clients need no
guessing.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from relay.core.models import Copy, LinkReport, MessageFilter, MessageSummary, RecipientReport
from relay.core.store import Store
from relay.core.store.sql.reports import decode_cursor, encode_cursor
from tracking_http.admin.params import is_digits, is_message_id
from tracking_http.admin.search import BadSearch, search_filter

log = logging.getLogger("tracking_http.admin")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

OPEN_CLASSES = ("human", "inferred", "proxy", "bot", "prefetch", "self")
CLICK_CLASSES = ("human", "bot", "prefetch", "self")
LIST_OPEN_KEYS = ("human", "unique_human", "inferred", "proxy", "bot", "prefetch", "self")
LIST_CLICK_KEYS = ("human", "unique_human", "bot", "prefetch", "self")
LINK_CLICK_KEYS = LIST_CLICK_KEYS  # unique_human: recipients (copies) with a human click

JsonObject = dict[str, Any]


def iso_time(ts: float | None) -> str | None:
    """Unix time as ISO 8601 UTC with a Z, second precision: ``2026-11-27T10:00:00Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(keys: tuple[str, ...], found: dict[str, int]) -> dict[str, int]:
    """Every documented key (0 when absent), then any further class the store reports."""
    out = {key: int(found.get(key, 0)) for key in keys}
    out.update({key: int(value) for key, value in found.items() if key not in out})
    return out


def overall_state(states: dict[str, int]) -> str:
    """One word for the list: the copies' common state, or ``mixed``."""
    present = [state for state, n in states.items() if n]
    if not present:
        return "none"
    return present[0] if len(present) == 1 else "mixed"


def summary_json(summary: MessageSummary) -> JsonObject:
    message = summary.message
    return {
        "id": message.id,
        "sender": message.sender,
        "subject": message.subject,
        "created_at": iso_time(message.received_at),
        "recipients": summary.recipients,
        "opens": {**counts(LIST_OPEN_KEYS, summary.opens), "rate": summary.open_rate},
        "clicks": {**counts(LIST_CLICK_KEYS, summary.clicks), "rate": summary.click_rate},
        "state": overall_state(summary.states),
        "states": dict(summary.states),
        "tags": list(message.tags),
    }


def opened_word(opens: dict[str, int]) -> str:
    """yes for a human (or inferred) open; maybe when only a privacy proxy fetched it."""
    if opens.get("human", 0):
        return "yes"
    return "maybe" if opens.get("proxy", 0) else "no"


def recipient_json(report: RecipientReport) -> JsonObject:
    """A recipient of a shared copy has its own state and reply too: a copy whose
    recipients the upstream answered apart is split by outcome (copy_id tells
    which part; shared: its events count for "someone")."""
    copy = report.copy
    return {
        "address": report.address,
        "state": copy.state if copy is not None else None,
        "copy_id": copy.id if copy is not None else None,
        "shared": copy is not None and copy.recipient is None,
        "rewrite_note": copy.rewrite_note if copy is not None else "",
        **delivery_json(copy),
        "opens": counts(OPEN_CLASSES, report.opens),
        "clicks": counts(CLICK_CLASSES, report.clicks),
        "opened": opened_word(report.opens),
        "replies": report.replies,
        "possibly_forwarded": report.possibly_forwarded,
        "first_open": iso_time(report.first_open),
        "last_open": iso_time(report.last_open),
        "links": links_json(report.links),
    }


def links_json(links: tuple[LinkReport, ...]) -> list[JsonObject]:
    return [{"url": link.url, "clicks": counts(LINK_CLICK_KEYS, link.clicks)} for link in links]


def delivery_json(copy: Copy | None) -> JsonObject:
    """Where the copy's delivery stands; next_attempt_at only while it waits in the queue."""
    if copy is None:
        return {
            "attempts": 0,
            "last_reply": "",
            "queue_id": "",
            "next_attempt_at": None,
            "delivered_at": None,
        }
    waiting = copy.state in ("queued", "deferred")
    return {
        "attempts": copy.attempts,
        "last_reply": copy.last_reply,
        "queue_id": copy.queue_id,
        "next_attempt_at": iso_time(copy.next_attempt_at) if waiting else None,
        "delivered_at": iso_time(copy.delivered_at),
    }


def json_error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


def json_response(body: JsonObject, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def page_after(cursor: str | None) -> str | None:
    """The store's cursor as the API spells it: the id of the page's last message."""
    return None if cursor is None else decode_cursor(cursor)


def parse_limit(raw: str | None) -> int | None:
    """The page size, 1..MAX_LIMIT; None when it is not a number in range."""
    if raw is None:
        return DEFAULT_LIMIT
    if not is_digits(raw) or len(raw) > 6:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_LIMIT else None


class AdminViews:
    """API handlers; the bearer check happens before them, in admin.auth."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def list_messages(self, request: web.Request) -> web.Response:
        limit = parse_limit(request.query.get("limit"))
        if limit is None:
            return json_error(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
        after = request.query.get("cursor")
        if after is not None and not is_message_id(after):
            return json_error(400, "cursor must be the next of a previous page (a message id)")
        cursor = None if after is None else encode_cursor(after)
        try:
            where = search_filter(request.query)
        except BadSearch as exc:
            return json_error(400, str(exc))
        if where == MessageFilter():
            page, next_cursor = await self._store.list_messages(limit=limit, cursor=cursor)
        else:
            page, next_cursor = await self._store.find_messages(where, limit=limit, cursor=cursor)
        return json_response(
            {"messages": [summary_json(s) for s in page], "next": page_after(next_cursor)}
        )

    async def message_detail(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        if not is_message_id(message_id):
            return json_error(404, "no such message")
        report = await self._store.message_report(message_id)
        if report is None:
            return json_error(404, "no such message")
        message = report.message
        body: JsonObject = {
            "id": message.id,
            "sender": message.sender,
            "subject": message.subject,
            "created_at": iso_time(message.received_at),
            "tags": list(message.tags),
            "mail_from": message.mail_from,
            "message_id_header": message.message_id_header,
            "tracking": {
                "opens": message.decision.opens,
                "clicks": message.decision.clicks,
                "per_recipient": message.decision.per_recipient,
                "reasons": list(message.decision.reasons),
            },
            "recipients": [recipient_json(r) for r in report.recipients],
            "someone": recipient_json(report.someone),
            "links": links_json(report.links),
        }
        return json_response(body)
