"""GET /metrics on the admin listener (behind the same bearer token as the API)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.core.metrics import Metrics
from relay.core.store import Store


def metrics_handler(metrics: Metrics, store: Store) -> Handler:
    """A handler that renders metrics in the Prometheus text format."""

    async def handle(request: web.Request) -> web.Response:
        body, content_type = await metrics.render(store)
        response = web.Response(body=body, headers={"Cache-Control": "no-store"})
        response.headers["Content-Type"] = content_type  # carries version=...; charset=...
        return response

    return handle
