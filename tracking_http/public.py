"""Pixel and click handlers of the public tracking server (SPEC section 6).

The token is checked before anything else, so a forged or tampered token
never reaches the store. A valid click always redirects and a pixel request
always gets the GIF, whatever the store does (see tracking_http.events).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import hdrs, web

from relay.core.config import TrackingConfig
from relay.core.store import Store
from relay.core.tokens import MAX_TOKEN_CHARS, InvalidToken, TokenCodec, TokenData
from tracking_http.client_ip import client_address, forwarded_hops
from tracking_http.events import EventRecorder, Hit
from tracking_http.headers import answer_headers
from tracking_http.labelling import ADMIN_COOKIE, admin_cookie_present

log = logging.getLogger("tracking_http.public")

# The smallest transparent GIF: 1x1, one transparent palette entry, 43 bytes.
TRANSPARENT_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff"
    b"!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
# Whole header sets, built once: the security hook then has nothing to add (headers.py).
PIXEL_HEADERS = answer_headers({hdrs.CONTENT_TYPE: "image/gif", **NO_CACHE})
REDIRECT_HEADERS = answer_headers({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
# A link that is not one of ours (cut short by a mail program, mistyped, forged): a page
# that says so, styled by its one inline <style>, which the CSP allows by its hash and
# nothing else (no script, no image, no remote load); no Location, so no open redirect.
NOT_FOUND_STYLE = (
    "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;color:#1d232b;"
    "background:#f6f8fa}main{max-width:32rem;margin:12vh auto 0;padding:1.5rem;background:#fff;"
    "border:1px solid #dde3ea;border-radius:8px}h1{font-size:1.35rem;margin:0 0 .6rem}"
    "p{margin:.4rem 0}.hint{color:#5f6b7a;font-size:.9rem}"
)
NOT_FOUND_CSP = (
    "default-src 'none'; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(NOT_FOUND_STYLE.encode()).digest()).decode()
    + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
NOT_FOUND_HEADERS = answer_headers(
    {
        hdrs.CONTENT_TYPE: "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "Content-Security-Policy": NOT_FOUND_CSP,
    }
)
NOT_FOUND_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    f"<title>Link not found</title><style>{NOT_FOUND_STYLE}</style></head><body><main>"
    "<h1>Link not found</h1><p>This link is broken: it is not complete, or it was changed "
    "on the way, so it cannot say where it was meant to go.</p>"
    "<p>If you copied it from an email, check that you copied all of it, or open the link "
    "from the email again.</p>"
    '<p class="hint">No page was opened and nothing was recorded.</p></main></body></html>'
)
NOT_FOUND_BODY = NOT_FOUND_PAGE.encode("utf-8")


def location_header(url: str) -> str:
    """The original URL, exactly, as a header value.

    Non-ASCII stays as it is: aiohttp writes headers as UTF-8 and browsers read
    Location as UTF-8, so the recipient lands on exactly the URL the sender
    wrote. Only what cannot be in a header (controls, lone surrogates) is
    percent-encoded, so no token can split or break the response.
    """
    return "".join(_header_safe(c) for c in url)


def _header_safe(char: str) -> str:
    code = ord(char)
    if code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
        return quote(char.encode("utf-8", "surrogatepass"), safe="")
    return char


class PublicViews:
    """The request handlers; config, store and codec are handed in, never global."""

    def __init__(
        self,
        config: TrackingConfig,
        store: Store,
        codec: TokenCodec,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock  # another clock replays recorded traffic (benchmarks/labelled.py)
        self._store = store
        self._codec = codec
        self.recorder = EventRecorder(config, store)

    async def pixel(self, request: web.Request) -> web.Response:
        data = self._verified(request.match_info["token"], "open")
        if data is not None and request.method == hdrs.METH_GET:
            await self.recorder.record(data, self._hit(request))
        return web.Response(body=TRANSPARENT_GIF, headers=PIXEL_HEADERS)

    async def click(self, request: web.Request) -> web.Response:
        data = self._verified(request.match_info["token"], "click")
        if data is None or not data.url:
            return web.Response(status=404, body=NOT_FOUND_BODY, headers=NOT_FOUND_HEADERS)
        if request.method == hdrs.METH_GET:
            await self.recorder.record(data, self._hit(request))
        response = web.Response(status=302, headers=REDIRECT_HEADERS)  # a copy of them
        response.headers[hdrs.LOCATION] = location_header(data.url)
        return response

    def _verified(self, token: str, kind: str) -> TokenData | None:
        """The token's data if genuine and of the expected kind; None otherwise.

        Longer than any token the codec makes: rejected before any HMAC work.
        """
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        try:
            data = self._codec.verify(token)
        except InvalidToken:
            return None
        return data if data.kind == kind else None

    def _hit(self, request: web.Request) -> Hit:
        headers = request.headers
        proxies = self._config.trusted_proxies
        hops = forwarded_hops(headers) if proxies else ()
        # Parsing Cookie costs more than the rest of the hit: only when there is one.
        cookie = hdrs.COOKIE in headers and admin_cookie_present(request.cookies.get(ADMIN_COOKIE))
        return Hit(
            ip=client_address(request.remote, hops, proxies),
            user_agent=headers.get(hdrs.USER_AGENT, ""),
            at=self._clock(),
            method=request.method,
            admin_cookie=cookie,
        )
