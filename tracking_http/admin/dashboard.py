"""The dashboard's pages: messages, one message, one contact, charts (SPEC 8).

Each page is a handful of bounded, indexed store reads (a page of messages,
one message, one address, one time window) and one template. The live feed
is a script in the page that listens on the API's event stream.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web
from yarl import URL

from relay.core.models import Event, MessageFilter
from relay.core.store import Store
from relay.core.store.sql.reports import encode_cursor
from tracking_http.admin.api import overall_state, page_after
from tracking_http.admin.charts import Chart, build_chart, hbars, window
from tracking_http.admin.pages import Pages
from tracking_http.admin.params import (
    MAX_ADDRESS,
    MAX_TAG,
    STATES,
    is_address,
    is_date,
    is_digits,
    is_message_id,
)
from tracking_http.admin.preview import PREVIEW_CSP, PREVIEW_ROUTE, Preview, build
from tracking_http.admin.search import MAX_Q
from tracking_http.readers import count_platforms, count_readers

PAGE_SIZE = 50
MAX_TIMELINE = 500
MAX_CHART_DAYS = 90
RAW_ROUTE = "/api/messages/{id}/raw"
STREAM = "/api/events/stream"


FEED_ON_LOAD = 50  # events the live feed shows when the page opens
FEED_WINDOWS = (100, 1000)  # ids looked back for them (ids may have gaps)


async def recent_events(store: Store) -> tuple[list[Event], int]:
    """The newest FEED_ON_LOAD events, newest first, and the id the stream resumes after."""
    floor = await store.last_event_id()
    found: list[Event] = []
    for look_back in FEED_WINDOWS:
        since = max(0, floor - look_back)
        found = [e for e in await store.list_events(since, limit=1000) if (e.id or 0) <= floor]
        if len(found) >= FEED_ON_LOAD or since == 0:
            break
    return found[-FEED_ON_LOAD:][::-1], floor


def stream_url(floor: int) -> str:
    """The live feed's stream, resuming after the events the page already shows."""
    return f"{STREAM}?last_event_id={floor}"


class BadQuery(ValueError):
    """A filter the page cannot use; the message is shown to the user."""


def parse_day(raw: str, name: str) -> float | None:
    """``YYYY-MM-DD`` as the unix time of that day's start (UTC); None when empty."""
    if not raw:
        return None
    try:
        if not is_date(raw):
            raise ValueError(raw)
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise BadQuery(f"{name}: use a date like 2026-11-27") from None
    return day.timestamp()


SEARCH_KEYS = ("q", "recipient", "sender", "tag", "state", "from", "to")


def message_filter(query: dict[str, str]) -> MessageFilter:
    """The messages page's search form as a MessageFilter; BadQuery names a bad field."""
    sender = query.get("sender", "")
    if len(sender) > MAX_ADDRESS:
        raise BadQuery("sender: too long for an address")
    sender = sender.strip()
    since = parse_day(query.get("from", ""), "from")
    until = parse_day(query.get("to", ""), "to")
    q = query.get("q", "").strip()
    if len(q) > MAX_Q:
        raise BadQuery(f"words: at most {MAX_Q} characters")
    recipient = query.get("recipient", "")
    if recipient and not is_address(recipient):
        raise BadQuery("recipient: an address like bob@example.net")
    tag = query.get("tag", "").strip()
    if len(tag) > MAX_TAG:
        raise BadQuery(f"tag: at most {MAX_TAG} characters")
    state = query.get("state", "")
    if state and state not in STATES:
        raise BadQuery(f"state: one of {', '.join(STATES)}")
    return MessageFilter(
        sender or None,
        since,
        None if until is None else until + 86400,
        q=q or None,
        recipient=recipient or None,
        tag=tag or None,
        state=state or None,
    )


def has_route(app: web.Application, canonical: str) -> bool:
    return any(resource.canonical == canonical for resource in app.router.resources())


class DashboardViews:
    def __init__(self, store: Store, pages: Pages) -> None:
        self._store = store
        self._pages = pages

    async def messages(self, request: web.Request) -> web.Response:
        query = {k: request.query.get(k, "") for k in SEARCH_KEYS}
        after = request.query.get("cursor")
        try:
            where = message_filter(query)
            if after is not None and not is_message_id(after):
                raise BadQuery("that page link is not valid")
            cursor = None if after is None else encode_cursor(after)
            page, next_cursor = await self._store.find_messages(where, PAGE_SIZE, cursor)
        except ValueError as exc:
            error = str(exc) if isinstance(exc, BadQuery) else "that page link is not valid"
            return self._pages.render(
                request,
                "messages.html",
                status=400,
                rows=[],
                query=query,
                error=error,
                next_url="",
                stream=STREAM,
                recent=[],
                states=STATES,
            )
        kept = {k: v for k, v in query.items() if v}
        after = page_after(next_cursor)
        next_url = str(URL("/").with_query({**kept, "cursor": after})) if after else ""
        rows = [(s, overall_state(s.states)) for s in page]
        recent, floor = await recent_events(self._store)
        return self._pages.render(
            request,
            "messages.html",
            rows=rows,
            query=query,
            error="",
            next_url=next_url,
            stream=stream_url(floor),
            recent=recent,
            states=STATES,
        )

    async def message(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        valid = is_message_id(message_id)
        report = await self._store.message_report(message_id) if valid else None
        if report is None:
            return self._not_found(request, "No such message.")
        events = await self._store.message_events(message_id, MAX_TIMELINE)
        chart = await self._chart(report.message.received_at, time.time(), message_id)
        by_recipient: dict[str | None, list[Event]] = {}
        for event in events:
            by_recipient.setdefault(event.recipient, []).append(event)
        raw_url = ""
        if report.message.decision.log_copy and has_route(request.app, RAW_ROUTE):
            raw_url = RAW_ROUTE.replace("{id}", message_id)
        preview = await self._preview(message_id) if report.message.decision.log_copy else None
        readers = count_readers(await self._store.message_clients(message_id))
        someone = report.someone
        return self._pages.render(
            request,
            "message.html",
            report=report,
            events=events,
            by_recipient=by_recipient,
            chart=chart,
            raw_url=raw_url,
            preview=preview,
            readers=readers,
            platforms=count_platforms(readers),
            bars=hbars([(f"{r.client} ({r.platform})", r.human + r.proxy) for r in readers]),
            preview_url=PREVIEW_ROUTE.replace("{id}", message_id),
            show_someone=bool(by_recipient.get(None))
            or any(someone.opens.values())
            or any(someone.clicks.values()),
            truncated=len(events) >= MAX_TIMELINE,
        )

    async def preview(self, request: web.Request) -> web.Response:
        """The logged copy's HTML alone, for the sandboxed frame of the message page."""
        message_id = request.match_info["id"]
        message = await self._store.get_message(message_id) if is_message_id(message_id) else None
        found = await self._preview(message_id) if message and message.decision.log_copy else None
        headers = {
            "Content-Security-Policy": PREVIEW_CSP,
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        }
        if found is None or found.html is None:
            text = "<p>No HTML part was logged for this message.</p>"
            return web.Response(status=404, text=text, content_type="text/html", headers=headers)
        return web.Response(text=found.html, content_type="text/html", headers=headers)

    async def _preview(self, message_id: str) -> Preview | None:
        try:
            raw = await self._store.load_raw(message_id)
        except KeyError:  # purged meanwhile
            return None
        return build(raw) if raw else None

    async def contact(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        report = await self._store.contact_report(address) if is_address(address) else None
        if report is None:
            return self._not_found(request, "Nothing was sent to that address.")
        return self._pages.render(request, "contact.html", report=report)

    async def charts(self, request: web.Request) -> web.Response:
        raw = request.query.get("days", "14")
        days = int(raw) if is_digits(raw) and len(raw) <= 3 else 0
        if not 1 <= days <= MAX_CHART_DAYS:
            return self._not_found(request, f"days: from 1 to {MAX_CHART_DAYS}", status=400)
        now = time.time()
        width = 86400.0 if days > 2 else 3600.0
        start = (now - days * 86400) // width * width
        count = int(-(-(now - start) // width))
        buckets = await self._store.event_histogram(start, start + count * width, width)
        chart = build_chart(buckets, start, width, count)
        return self._pages.render(request, "charts.html", chart=chart, days=days)

    async def feed(self, request: web.Request) -> web.Response:
        recent, floor = await recent_events(self._store)
        return self._pages.render(request, "feed.html", stream=stream_url(floor), recent=recent)

    async def _chart(self, first: float, now: float, message_id: str) -> Chart:
        start, width, count = window(first, now)
        buckets = await self._store.event_histogram(
            start, start + count * width, width, message_id=message_id
        )
        return build_chart(buckets, start, width, count)

    def _not_found(self, request: web.Request, text: str, status: int = 404) -> web.Response:
        return self._pages.render(request, "not_found.html", status=status, text=text)
