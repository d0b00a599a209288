"""Search, tags and mail clients in the JSON API (SPEC 8).

``GET /api/messages`` takes the search parameters (``search_filter``);
``GET /api/tags`` lists the tags, ``GET /api/tags/{tag}`` is a tag's campaign
report (``?format=csv``: the same as CSV, one row per link and a totals row),
and ``/api/messages/{id}/clients`` and ``/api/tags/{tag}/clients`` say which
mail clients and platforms opened (tracking_http/readers.py names them).
Rates are the store's: unique human opens or clicks over delivered
recipients, click-to-open over unique human opens, 0.0 when nothing was
delivered.
"""

from __future__ import annotations

import csv
import io

from aiohttp import web

from relay.core.models import TagReport
from relay.core.store import Store
from tracking_http.admin.api import JsonObject, iso_time, json_error, json_response
from tracking_http.admin.events_api import csv_cell
from tracking_http.admin.params import MAX_TAG, is_message_id
from tracking_http.admin.search import BadSearch, time_range
from tracking_http.readers import ReaderCount, count_platforms, count_readers

MAX_TAGS_LISTED = 1000
CSV_HEADER = ("tag", "url", "unique_human_clicks", "messages", "recipients", "delivered",
              "bounced", "unique_human_opens", "open_rate", "proxy_rate", "click_rate",
              "click_to_open")  # fmt: skip


def tag_json(report: TagReport, since: float | None, until: float | None) -> JsonObject:
    return {
        "tag": report.tag,
        "since": iso_time(since),
        "until": iso_time(until),
        "messages": report.messages,
        "recipients": report.recipients,
        "delivered": report.delivered,
        "bounced": report.bounced,
        "opens": {
            "unique_human": report.opens["unique_human"],
            "rate": report.open_rate,
            "unique_maybe": report.opens["unique_maybe"],
            "proxy_rate": report.proxy_rate,
        },
        "clicks": {
            "unique_human": report.clicks["unique_human"],
            "rate": report.click_rate,
            "click_to_open": report.click_to_open,
        },
        "links": [{"url": url, "unique_human": n} for url, n in report.links],
    }


def tag_csv(report: TagReport) -> str:
    """One row per link, then a totals row (url empty, the link clicks summed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    totals = (
        report.messages,
        report.recipients,
        report.delivered,
        report.bounced,
        report.opens["unique_human"],
        report.open_rate,
        report.proxy_rate,
        report.click_rate,
        report.click_to_open,
    )
    for url, n in report.links:
        writer.writerow([csv_cell(report.tag), csv_cell(url), n] + [""] * len(totals))
    writer.writerow([csv_cell(report.tag), "", report.clicks["unique_human"], *totals])
    return out.getvalue()


def readers_json(readers: list[ReaderCount]) -> JsonObject:
    return {
        "clients": [
            {"client": r.client, "platform": r.platform, "human": r.human, "proxy": r.proxy}
            for r in readers
        ],
        "platforms": [
            {"platform": r.platform, "human": r.human, "proxy": r.proxy}
            for r in count_platforms(readers)
        ],
    }


def tag_param(request: web.Request) -> str | None:
    tag = request.match_info["tag"]
    return tag if 1 <= len(tag) <= MAX_TAG else None


class TagViews:
    """GET /api/tags, /api/tags/{tag}, its clients, and a message's clients."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def list_tags(self, request: web.Request) -> web.Response:
        tags = await self._store.list_tags(limit=MAX_TAGS_LISTED)
        return json_response(
            {
                "tags": [
                    {"tag": t.tag, "messages": t.messages, "last_used": iso_time(t.last_used)}
                    for t in tags
                ]
            }
        )

    async def tag_report(self, request: web.Request) -> web.Response:
        tag = tag_param(request)
        if tag is None:
            return json_error(400, f"a tag is 1 to {MAX_TAG} characters")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return json_error(400, "format must be json or csv")
        try:
            since, until = time_range(request.query)
        except BadSearch as exc:
            return json_error(400, str(exc))
        report = await self._store.tag_report(tag, since, until)
        if report is None:
            return json_error(404, "no message with this tag in that time")
        if fmt == "json":
            return json_response(tag_json(report, since, until))
        return web.Response(
            text=tag_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="tag.csv"',
            },
        )

    async def tag_clients(self, request: web.Request) -> web.Response:
        tag = tag_param(request)
        if tag is None:
            return json_error(400, f"a tag is 1 to {MAX_TAG} characters")
        try:
            since, until = time_range(request.query)
        except BadSearch as exc:
            return json_error(400, str(exc))
        rows = await self._store.tag_clients(tag, since, until)
        return json_response({"tag": tag, **readers_json(count_readers(rows))})

    async def message_clients(self, request: web.Request) -> web.Response:
        message_id = request.match_info["id"]
        if not is_message_id(message_id) or await self._store.get_message(message_id) is None:
            return json_error(404, "no such message")
        rows = await self._store.message_clients(message_id)
        return json_response({"id": message_id, **readers_json(count_readers(rows))})
