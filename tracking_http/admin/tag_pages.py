"""The dashboard's tags pages: every tag, and one tag's campaign report (SPEC 8).

A tag's page is the API's report (``GET /api/tags/{tag}``) over the days the
form asks for: messages, recipients, delivered and bounced copies; unique
human opens and clicks with their rates (over delivered copies), "opened,
maybe" (a privacy proxy fetched the pixel, no person seen), click-to-open;
clicks per link; the mail clients that opened; and the same as CSV.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from relay.core.store import Store
from tracking_http.admin.charts import HBar, hbars
from tracking_http.admin.dashboard import BadQuery, parse_day
from tracking_http.admin.pages import Pages
from tracking_http.admin.params import MAX_TAG
from tracking_http.readers import ReaderCount, count_platforms, count_readers

MAX_TAGS_SHOWN = 1000


def reader_bars(readers: list[ReaderCount]) -> list[HBar]:
    """Readers per client (and platform), for the bar chart beside the table."""
    return hbars([(f"{r.client} ({r.platform})", r.human + r.proxy) for r in readers])


class TagPages:
    def __init__(self, store: Store, pages: Pages) -> None:
        self._store = store
        self._pages = pages

    async def tags(self, request: web.Request) -> web.Response:
        tags = await self._store.list_tags(limit=MAX_TAGS_SHOWN)
        return self._pages.render(request, "tags.html", tags=tags, limit=MAX_TAGS_SHOWN)

    async def tag(self, request: web.Request) -> web.Response:
        tag = request.match_info["tag"]
        query = {k: request.query.get(k, "") for k in ("from", "to")}
        if not 1 <= len(tag) <= MAX_TAG:
            return self._pages.render(request, "not_found.html", status=404, text="No such tag.")
        try:
            since = parse_day(query["from"], "from")
            to_day = parse_day(query["to"], "to")
        except BadQuery as exc:
            return self._render(request, tag, query, error=str(exc), status=400)
        until = None if to_day is None else to_day + 86400
        report = await self._store.tag_report(tag, since, until)
        if report is None:
            text = "No message with this tag" + (" in those days." if since or until else ".")
            return self._render(request, tag, query, error=text, status=404)
        readers = count_readers(await self._store.tag_clients(tag, since, until))
        bounds = {k: str(int(v)) for k, v in (("since", since), ("until", until)) if v is not None}
        csv_url = URL("/api/tags").joinpath(tag).with_query({"format": "csv", **bounds})
        return self._render(
            request,
            tag,
            query,
            report=report,
            readers=readers,
            platforms=count_platforms(readers),
            bars=reader_bars(readers),
            csv_url=str(csv_url),
        )

    def _render(
        self,
        request: web.Request,
        tag: str,
        query: dict[str, str],
        error: str = "",
        status: int = 200,
        **found: object,
    ) -> web.Response:
        context: dict[str, object] = {
            "report": None,
            "readers": [],
            "platforms": [],
            "bars": [],
            "csv_url": "",
        }
        context.update(found)
        return self._pages.render(
            request, "tag.html", status=status, tag=tag, query=query, error=error, **context
        )
