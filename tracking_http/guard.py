"""The HTTP listeners' guard: connection caps, a header-read timeout, a listen backlog.

aiohttp closes a connection idle between requests after ``keepalive_timeout``
(our ``idle_timeout``; it also runs from the moment a connection opens, so a
connection that never sends a request is closed too). What it lacks is a
deadline on a request's header block once it has started (a client sending
one byte every few seconds keeps a connection forever), and a cap on the
connections one address may hold. Each connection's protocol is wrapped:
the wrapper refuses connections beyond the caps with a ``503`` and closes a
request whose headers have not arrived within ``header_timeout`` of its
first byte. The app's middleware tells the wrapper when a request reached
the handler (headers complete) and when its answer is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from relay.core.limits import ConnectionLimits, Network, RateLimitedLog, peer_address

log = logging.getLogger("tracking_http.guard")
HEADER_END = b"\r\n\r\n"
BACKLOG = 1024  # a burst of connects waits in the kernel rather than being reset
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
    b"Retry-After: 10\r\nConnection: close\r\n\r\ntoo many connections\r\n"
)
GUARDS: web.AppKey[dict[Any, GuardedProtocol]] = web.AppKey("connection_guards")


@dataclass(frozen=True)
class GuardSettings:
    max_connections: int
    max_connections_per_address: int
    header_timeout: float
    idle_timeout: float
    exempt: tuple[Network, ...] = ()  # trusted proxies: counted in the total only


class GuardedProtocol(asyncio.Protocol):
    """One connection: aiohttp's handler inside, the caps and the header deadline outside."""

    def __init__(
        self,
        inner: RequestHandler,
        limits: ConnectionLimits,
        settings: GuardSettings,
        registry: dict[Any, GuardedProtocol],
        refusals: RateLimitedLog,
    ) -> None:
        self._inner = inner
        self._limits = limits
        self._settings = settings
        self._registry = registry
        self._refusals = refusals
        self._address: str | None = None  # set once admitted
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        address = peer_address(transport)
        refusal = self._limits.admit(address)
        if refusal is not None:
            self._refusals.warning("refused", f"HTTP connection from {address} refused: {refusal}")
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REFUSED)
            transport.close()
            return
        self._address = address
        self._transport = transport
        self._registry[transport] = self
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._address is None:
            return
        self._limits.release(self._address)
        self._registry.pop(self._transport, None)
        self._cancel_deadline()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._address is None:
            return
        # A request whose header block arrives whole (every pixel and click) needs no timer:
        # only one still incomplete after its first chunk gets header_timeout.
        if not self._busy and self._deadline is None and HEADER_END not in data:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self._settings.header_timeout, self._too_slow)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._address is not None:
            self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def request_started(self) -> None:
        self._busy = True
        self._cancel_deadline()

    def request_done(self) -> None:
        self._busy = False

    def _too_slow(self) -> None:
        self._deadline = None
        if not self._busy:
            self._refusals.warning(
                "header-timeout", f"HTTP request from {self._address}: headers too slow, closed"
            )
            self._inner.force_close()

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


@web.middleware
async def track_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Tells the connection's guard that a request's headers are in, and when it is done."""
    guard = request.app[GUARDS].get(request.transport)
    if guard is None:  # a test server without the guard
        return await handler(request)
    guard.request_started()
    try:
        return await handler(request)
    finally:
        guard.request_done()


def guard_app(app: web.Application) -> None:
    """Install the middleware and the connection registry on an app (before it starts)."""
    app[GUARDS] = {}
    app.middlewares.append(track_requests)


class GuardedSite(web.TCPSite):
    """A TCPSite whose connections pass through GuardedProtocol, with a deep backlog."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, settings: GuardSettings, **kwargs: Any
    ) -> None:
        super().__init__(runner, host, port, backlog=BACKLOG, **kwargs)
        self._settings = settings
        self._limits = ConnectionLimits(
            settings.max_connections, settings.max_connections_per_address, settings.exempt
        )
        self._refusals = RateLimitedLog(log)

    @property
    def limits(self) -> ConnectionLimits:
        return self._limits

    async def start(self) -> None:
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        app = getattr(self._runner, "app", None)
        registry: dict[Any, GuardedProtocol] = app[GUARDS] if app is not None else {}

        def factory() -> GuardedProtocol:
            inner = server()
            return GuardedProtocol(inner, self._limits, self._settings, registry, self._refusals)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            factory,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
