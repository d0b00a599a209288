"""/healthz and /readyz on both HTTP listeners.

/healthz answers whether this process serves and its store answers (SPEC 6):
a monitor's "is it working". /readyz says whether it should get new traffic:
the same, and not draining: from SIGTERM until the listeners close (the SMTP
side may take up to 30 s to let messages in DATA finish), /readyz answers 503
so a load balancer moves readers to another node while this one still
answers every pixel and click it is sent.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from relay.core.store import Store

log = logging.getLogger("tracking_http.health")
HEALTH_TIMEOUT = 2.0
NO_CACHE = {"Cache-Control": "no-store"}


@dataclass
class RunState:
    """What the process is doing, shared by its listeners; the CLI sets draining."""

    draining: bool = False


class Health:
    def __init__(self, store: Store, state: RunState) -> None:
        self._store = store
        self._state = state

    async def healthz(self, _request: web.Request) -> web.Response:
        problem = await self._store_problem()
        if problem:
            return web.Response(status=503, text=problem + "\n", headers=NO_CACHE)
        return web.Response(text="ok", headers=NO_CACHE)

    async def readyz(self, _request: web.Request) -> web.Response:
        problem = "draining" if self._state.draining else await self._store_problem()
        if problem:
            return web.Response(status=503, text=problem + "\n", headers=NO_CACHE)
        return web.Response(text="ready", headers=NO_CACHE)

    async def _store_problem(self) -> str:
        try:
            await asyncio.wait_for(self._store.ping(), HEALTH_TIMEOUT)
        except Exception as exc:
            log.warning("health: store unreachable: %r", exc)
            return "store unreachable"
        return ""
