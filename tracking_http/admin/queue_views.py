"""The dashboard's queue and webhooks pages: what waits, what bounced, what failed, and the
buttons to try again or drop (SPEC 8; the same operations as ``relay queue``).

Every button is a POST with the form value of tracking_http.admin.forms; the
answer is a redirect back to the page (303) with a fixed note, never text
taken from the request. Deleting asks once more on a page of its own, so a
stray click drops nothing.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from relay.core.store import Store
from tracking_http.admin.api import json_error
from tracking_http.admin.login import bad_form, read_form, see_other
from tracking_http.admin.pages import Pages
from tracking_http.admin.params import MAX_ID_DIGITS, is_digits

Form = MultiDictProxy[str | bytes | bytearray | web.FileField]
PAGE = 100  # rows per section
MAX_FORM_IDS = 500  # aiohttp reads at most 1000 fields of a form
NOTES = {
    "retried": "{n} cop{ies} will be tried again now.",
    "deleted": "{n} cop{ies} deleted.",
    "hooks": "{n} webhook deliver{ies} will be tried again now.",
}


def form_ids(values: list[object]) -> list[int] | None:
    """The posted ids, or None when one is not an id (or there are too many)."""
    if not values or len(values) > MAX_FORM_IDS:
        return None
    ids: list[int] = []
    for value in values:
        if not isinstance(value, str) or not is_digits(value) or len(value) > MAX_ID_DIGITS:
            return None
        ids.append(int(value))
    return ids


def note_text(request: web.Request) -> str | None:
    """The note a redirect asked for (only the fixed texts above, with a count); "" when
    none was asked for (both are needed), None when done or n is not one of ours."""
    done, raw = request.query.get("done"), request.query.get("n")
    template = NOTES.get(done or "")
    if (done is not None and template is None) or (
        raw is not None and (not is_digits(raw) or len(raw) > 6)
    ):
        return None
    if template is None or raw is None:
        return ""
    n = int(raw)
    plural = template.replace("cop{ies}", "copy" if n == 1 else "copies")
    return plural.replace("deliver{ies}", "delivery" if n == 1 else "deliveries").format(n=n)


def back(path: str, done: str, n: int) -> web.Response:
    return see_other(str(URL(path).with_query(done=done, n=str(n))))


class QueueViews:
    def __init__(self, store: Store, pages: Pages) -> None:
        self._store = store
        self._pages = pages

    async def queue(self, request: web.Request) -> web.Response:
        note = note_text(request)
        if note is None:
            return self._bad_note(request)
        depth = await self._store.queue_depth()
        waiting = await self._store.queue_entries(("queued", "deferred"), limit=PAGE)
        bounced = await self._store.queue_entries(("bounced",), limit=PAGE)
        return self._pages.render(
            request,
            "queue.html",
            depth=depth,
            waiting=waiting,
            bounced=bounced,
            page=PAGE,
            note=note,
        )

    async def retry(self, request: web.Request) -> web.Response:
        ids = await self._posted_ids(request, "copy")
        if isinstance(ids, web.Response):
            return ids
        retried = await self._store.retry_now(ids) + await self._store.requeue_bounced(ids)
        return back("/queue", "retried", retried)

    async def delete(self, request: web.Request) -> web.Response:
        """First post: a page asking to confirm; with confirm=yes: the copies go."""
        form = await read_form(request)
        if form is None:
            return bad_form()
        ids = await self._posted_ids(request, "copy", form)
        if isinstance(ids, web.Response):
            return ids
        confirm = form.get("confirm")
        if confirm not in (None, "yes"):
            return json_error(400, "confirm: yes, or nothing to be asked first")
        if confirm is None:
            copies = [c for c in [await self._store.get_copy(i) for i in ids[:PAGE]] if c]
            return self._pages.render(request, "queue_delete.html", copies=copies)
        return back("/queue", "deleted", await self._store.delete_queued(ids))

    async def webhooks(self, request: web.Request) -> web.Response:
        note = note_text(request)
        if note is None:
            return self._bad_note(request)
        backlog = await self._store.webhook_backlog()
        rows = await self._store.list_webhooks(limit=PAGE * 2)
        failed = [r.delivery.id for r in rows if r.state == "failed"]
        return self._pages.render(
            request,
            "webhooks.html",
            backlog=backlog,
            rows=rows,
            failed=failed,
            page=PAGE * 2,
            note=note,
        )

    async def retry_webhooks(self, request: web.Request) -> web.Response:
        ids = await self._posted_ids(request, "delivery")
        if isinstance(ids, web.Response):
            return ids
        return back("/webhooks", "hooks", await self._store.retry_webhooks(ids))

    async def _posted_ids(
        self, request: web.Request, name: str, form: Form | None = None
    ) -> list[int] | web.Response:
        posted = form if form is not None else await read_form(request)
        if posted is None:
            return bad_form()
        if not self._pages.guard.allows(request, posted.get("csrf")):
            raise web.HTTPForbidden(text="stale or missing form value: reload the page")
        ids = form_ids(list(posted.getall(name, [])))
        if ids is None:
            return json_error(400, f"{name}: one to {MAX_FORM_IDS} ids, digits only")
        return ids

    def _bad_note(self, request: web.Request) -> web.Response:
        text = "done and n: only as the buttons send them"
        return self._pages.render(request, "not_found.html", status=400, text=text)
