"""The headers every answer carries, and the public answers' whole header sets, built once.

``add_security_headers`` (an on_response_prepare hook) is the guarantee: it
runs for every answer of both apps, router 404s and 405s and 500s included,
and adds what a handler did not set. The public handlers answer thousands
of times a second, so their answers start from a complete, prebuilt set
(``answer_headers``) and the hook only checks its mark: the ``Server`` value
below, which only ``answer_headers`` sets before the hook runs (aiohttp's
own default names aiohttp).
"""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
SERVER = "relay"  # no version numbers for scanners


def answer_headers(extra: dict[str, str]) -> CIMultiDict[str]:
    """Everything the hook would add, then ``extra`` (which wins): copy it per answer."""
    headers = CIMultiDict(SECURITY_HEADERS)
    headers.update(extra)
    headers[hdrs.SERVER] = SERVER
    return headers


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare runs for every answer, router 404s and 405s included."""
    headers = response.headers
    if headers.get(hdrs.SERVER) == SERVER:  # a prebuilt set: complete already
        return
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers[hdrs.SERVER] = SERVER
