"""Login and logout for the dashboard (the API keeps using the bearer header).

The form posts the admin token once; the answer sets the ``relay_admin``
cookie (a signed expiry, see tracking_http.admin.session): HttpOnly,
SameSite=Strict, and Secure when the request came over HTTPS. A wrong token
is answered after a pause, which makes guessing slow.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import hdrs, web
from multidict import MultiDictProxy

from relay.core.config import AdminConfig
from tracking_http.admin import session
from tracking_http.admin.api import json_error
from tracking_http.admin.auth import open_without_token
from tracking_http.admin.pages import Pages

log = logging.getLogger("tracking_http.admin")

FAILED_LOGIN_DELAY = 0.5  # seconds
MAX_NEXT = 2048


def safe_next(raw: str | None) -> str:
    """Only a local path: ``/x`` yes, ``//evil.example`` or ``https://…`` no (open redirect)."""
    if not raw or len(raw) > MAX_NEXT or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    if "\\" in raw or any(ord(ch) < 0x20 for ch in raw):
        return "/"
    return raw


def see_other(location: str) -> web.Response:
    return web.Response(
        status=303, headers={hdrs.LOCATION: location, hdrs.CACHE_CONTROL: "no-store"}
    )


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField] | None:
    """The posted form; None when the body cannot be one (a multipart type without
    its boundary, a broken multipart body, an unknown charset): a 400, not a 500."""
    try:
        return await request.post()
    except (ValueError, LookupError):  # UnicodeDecodeError is a ValueError
        return None


def bad_form() -> web.Response:
    return json_error(400, "the body is not a form (application/x-www-form-urlencoded)")


class LoginViews:
    def __init__(self, config: AdminConfig, pages: Pages) -> None:
        self._token = config.token
        self._open = open_without_token(config)
        self._pages = pages

    async def form(self, request: web.Request) -> web.Response:
        target = safe_next(request.query.get("next"))
        if self._open:
            raise web.HTTPSeeOther(target)
        return self._pages.render(request, "login.html", next=target, error="")

    async def login(self, request: web.Request) -> web.Response:
        form = await read_form(request)
        if form is None:
            return bad_form()
        given, target = form.get("token"), safe_next(str(form.get("next", "/")))
        if not isinstance(given, str) or not session.token_equals(given.strip(), self._token):
            log.info("dashboard login refused from %s", request.remote)
            await asyncio.sleep(FAILED_LOGIN_DELAY)
            return self._pages.render(
                request, "login.html", status=401, next=target, error="That token is not right."
            )
        response = see_other(target)
        response.set_cookie(
            session.COOKIE,
            session.issue(self._token),
            max_age=session.SESSION_SECONDS,
            path="/",
            httponly=True,
            secure=request.secure,
            samesite="Strict",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """POST with the form's CSRF value; clears the cookie."""
        form = await read_form(request)
        if form is None:
            return bad_form()
        cookie = request.cookies.get(session.COOKIE, "")
        given = form.get("csrf")
        if not isinstance(given, str) or not session.csrf_matches(given, cookie, self._token):
            raise web.HTTPForbidden(text="stale or missing form value: reload the page")
        response = see_other("/login")
        response.del_cookie(session.COOKIE, path="/")
        return response
