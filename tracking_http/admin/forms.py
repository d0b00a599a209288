"""The dashboard's buttons that change something: a POST carrying a value bound to the session.

A logged-in browser gets the logout form's value (tracking_http.admin.session:
an HMAC of its cookie under a key derived from the token), which another
site can neither read nor compute; SameSite=Strict already keeps the cookie
off cross-site requests. With no token on a loopback-only listener (open,
as on a fresh install) there is no cookie: the value is then an HMAC under a
key drawn when the app starts, so a page on another site still cannot post
to the operator's relay through the operator's browser. A script with the
bearer header needs no value: browsers never add that header by themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import hdrs, web

from tracking_http.admin import session
from tracking_http.admin.auth import token_matches


class FormGuard:
    def __init__(self, token: str, open_mode: bool) -> None:
        self._token = token
        self._open_key = secrets.token_bytes(32) if open_mode else b""

    def value(self, request: web.Request) -> str:
        """The hidden field's value for forms on this request's page; "" offers no form."""
        cookie = request.cookies.get(session.COOKIE, "")
        if session.is_valid(cookie, self._token):
            return session.csrf_value(cookie, self._token)
        if self._open_key:
            return hmac.new(self._open_key, b"csrf:open", hashlib.sha256).hexdigest()
        return ""

    def allows(self, request: web.Request, given: object) -> bool:
        """A form post with the right value, or a script with the bearer header."""
        if token_matches(request.headers.get(hdrs.AUTHORIZATION, ""), self._token):
            return True
        expected = self.value(request)
        if not expected or not isinstance(given, str) or len(given) > session.MAX_COOKIE:
            return False
        return hmac.compare_digest(given.encode("ascii", "replace"), expected.encode("ascii"))
