"""Events in the JSON API: the list with filters, a contact's record, the CSV export.

Every parameter a client controls is checked and bounded; a bad one gets a
400 with a JSON error. Events are read by id (``since`` is an id cursor), so
a client that pages or exports never misses or repeats one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from relay.core.models import ContactReport, Event, is_machine
from relay.core.store import Store
from tracking_http.admin.api import JsonObject, iso_time, json_error, json_response
from tracking_http.admin.params import MAX_ADDRESS, MAX_ID_DIGITS, is_address, is_digits

EVENT_TYPES = ("open", "click", "reply")
DEFAULT_EVENTS = 100
MAX_EVENTS = 1000
EXPORT_PAGE = 1000
CONTACT_TIMELINE = 200
CSV_COLUMNS = (
    "id",
    "type",
    "at",
    "message_id",
    "recipient",
    "url",
    "class",
    "reasons",
    "inferred",
    "ip",
    "user_agent",
)
# A cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class BadParameter(ValueError):
    """A query parameter out of its documented range; the message says which."""


@dataclass(frozen=True)
class EventQuery:
    since: int
    kind: str | None
    recipient: str | None
    limit: int


def event_json(event: Event) -> JsonObject:
    """One event as the API, the live feed and webhooks' consumers see it."""
    return {
        "id": event.id,
        "type": event.kind,
        "at": iso_time(event.at),
        "message_id": event.message_id,
        "recipient": event.recipient,
        "url": event.url or None,
        "class": event.klass,
        "reasons": list(event.reasons),
        "inferred": event.inferred,
        "is_machine": is_machine(event.klass, event.inferred),
        "ip": event.ip,
        "user_agent": event.user_agent,
    }


def parse_id(raw: str | None, name: str) -> int:
    """An event id cursor: ASCII digits only, 0 when absent."""
    if raw is None:
        return 0
    if not is_digits(raw) or len(raw) > MAX_ID_DIGITS:
        raise BadParameter(f"{name} must be an event id (a non-negative integer)")
    return int(raw)


def parse_event_query(query: dict[str, str], default_limit: int = DEFAULT_EVENTS) -> EventQuery:
    """since, type, recipient and limit, each checked; BadParameter names the culprit.

    A parameter that is given must be valid (an empty ``type`` or ``since`` is
    refused, not read as absent); an empty ``recipient`` means any recipient.
    """
    kind = query.get("type")
    if kind is not None and kind not in EVENT_TYPES:
        raise BadParameter("type must be one of " + ", ".join(EVENT_TYPES))
    recipient = query.get("recipient") or None
    if recipient is not None and len(recipient) > MAX_ADDRESS:
        raise BadParameter(f"recipient is longer than {MAX_ADDRESS} characters")
    raw_limit = query.get("limit", str(default_limit))
    if not is_digits(raw_limit) or not 1 <= int(raw_limit[:7]) <= MAX_EVENTS:
        raise BadParameter(f"limit must be an integer from 1 to {MAX_EVENTS}")
    return EventQuery(parse_id(query.get("since"), "since"), kind, recipient, int(raw_limit))


def csv_cell(value: object) -> str:
    """Text for a CSV cell, with a leading quote when a spreadsheet would run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_rows(events: Sequence[Event]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for e in events:
        row = (e.id, e.kind, iso_time(e.at), e.message_id, e.recipient, e.url, e.klass)
        rest = (" ".join(e.reasons), str(e.inferred).lower(), e.ip, e.user_agent)
        writer.writerow([csv_cell(v) for v in (*row, *rest)])
    return out.getvalue()


def contact_json(report: ContactReport, counts: dict[str, dict[str, int]]) -> JsonObject:
    return {
        "address": report.address,
        "last_open": iso_time(report.last_open),
        "last_click": iso_time(report.last_click),
        "last_reply": iso_time(report.last_reply),
        "counts": counts,
        "messages": [
            {
                "id": message.id,
                "sender": message.sender,
                "subject": message.subject,
                "created_at": iso_time(message.received_at),
                "state": copy.state,
                "delivered_at": iso_time(copy.delivered_at),
            }
            for message, copy in report.deliveries
        ],
        "timeline": [event_json(e) for e in report.events],
    }


class EventViews:
    """GET /api/events, /api/contacts/{address}, /api/export.csv (behind the bearer check)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def list_events(self, request: web.Request) -> web.Response:
        try:
            q = parse_event_query(dict(request.query))
        except BadParameter as exc:
            return json_error(400, str(exc))
        events = await self._store.list_events(q.since, q.kind, q.recipient, q.limit)
        next_id = events[-1].id if len(events) == q.limit else None
        return json_response({"events": [event_json(e) for e in events], "next": next_id})

    async def contact(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if not is_address(address):
            return json_error(400, "not an address")
        report = await self._store.contact_report(address, CONTACT_TIMELINE)
        if report is None:
            return json_error(404, "nothing was sent to this address")
        counts = await self._store.contact_counts(address)
        return json_response(contact_json(report, counts))

    async def export_csv(self, request: web.Request) -> web.StreamResponse:
        """Streamed a page at a time: memory stays flat however many events there are."""
        try:
            q = parse_event_query(dict(request.query), default_limit=EXPORT_PAGE)
        except BadParameter as exc:
            return json_error(400, str(exc))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": 'attachment; filename="events.csv"',
                "Cache-Control": "no-store",
            }
        )
        await response.prepare(request)
        await response.write((",".join(CSV_COLUMNS) + "\r\n").encode())
        since = q.since
        while True:
            page = await self._store.list_events(since, q.kind, q.recipient, EXPORT_PAGE)
            if page:
                await response.write(csv_rows(page).encode("utf-8"))
                since = page[-1].id or since
            if len(page) < EXPORT_PAGE:
                break
        await response.write_eof()
        return response
