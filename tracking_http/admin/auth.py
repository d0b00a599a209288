"""Bearer-token protection for everything on the admin listener.

Every request needs ``Authorization: Bearer <admin.token>`` or the login
cookie (tracking_http.admin.session), compared in constant time. An empty
token is accepted only when every admin listener is on loopback: the config
refuses an empty token off loopback, and this check refuses it again so a
config bug cannot open the API to the network.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from relay.core.config import AdminConfig, HostPort
from tracking_http.admin import session

log = logging.getLogger("tracking_http.admin")

MAX_AUTHORIZATION = 1024  # a longer header cannot hold our token


def is_loopback(address: HostPort) -> bool:
    if address.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        return False


def open_without_token(config: AdminConfig) -> bool:
    """No token and loopback only: the operator's own machine, as on a fresh install."""
    return not config.token and bool(config.listen) and all(map(is_loopback, config.listen))


def token_matches(header: str, token: str) -> bool:
    """Constant-time check of an ``Authorization: Bearer ...`` value against the token."""
    if not token or len(header) > MAX_AUTHORIZATION:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    given = credentials.strip().encode("utf-8", "surrogatepass")  # never raises
    return hmac.compare_digest(given, token.encode("utf-8", "surrogatepass"))


def unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text=json.dumps({"error": "unauthorized", "detail": "Authorization: Bearer <token>"}),
        content_type="application/json",
        headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="relay admin"', "Cache-Control": "no-store"},
    )


PUBLIC_PATHS = frozenset({"/login", "/healthz", "/readyz"})


def is_public(path: str) -> bool:
    """The login page, the dashboard's CSS and JS, and the health checks need no
    credentials (the checks say "ok" or what is wrong, nothing more)."""
    return path in PUBLIC_PATHS or path.startswith("/static/")


def to_login(request: web.Request) -> web.Response:
    """A page asked for without credentials: the login form, then back here."""
    target = request.rel_url.path_qs if request.method == "GET" else "/"
    location = URL("/login").with_query(next=target) if target != "/" else URL("/login")
    return web.Response(status=303, headers={hdrs.LOCATION: str(location)})


def bearer_auth(config: AdminConfig) -> Middleware:
    """A middleware that refuses before any handler unless the bearer token or cookie is right.

    API calls (/api/, /metrics) get 401; pages redirect to the login form.
    """
    allow_all = open_without_token(config)
    if allow_all:
        log.warning("admin.token is empty: the admin API is open to loopback clients")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            allow_all
            or is_public(request.path)
            or token_matches(request.headers.get(hdrs.AUTHORIZATION, ""), config.token)
            or session.is_valid(request.cookies.get(session.COOKIE, ""), config.token)
        ):
            return await handler(request)
        if request.path.startswith("/api/") or request.path == "/metrics":
            return unauthorized()
        return to_login(request)

    return middleware
