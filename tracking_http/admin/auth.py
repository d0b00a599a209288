"""Bearer-token protection for everything on the admin listener.

Every request needs ``Authorization: Bearer <admin.token>``, compared in
constant time. An empty token is accepted only when every admin listener
is on loopback: the config refuses an empty token off loopback, and this
check refuses it again so a config bug cannot open the API to the network.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from relay.core.config import AdminConfig, HostPort

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


def bearer_auth(config: AdminConfig) -> Middleware:
    """A middleware that answers 401 before any handler unless the token is right."""
    allow_all = open_without_token(config)
    if allow_all:
        log.warning("admin.token is empty: the admin API is open to loopback clients")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if allow_all or token_matches(request.headers.get(hdrs.AUTHORIZATION, ""), config.token):
            return await handler(request)
        return unauthorized()

    return middleware
