"""A middleware that times each request of a listener into a Prometheus histogram.

The pixel is the hottest path of the relay, so the cost per request is two clock
reads, one dict lookup and one observe (about a microsecond): the labelled child of
each route is made once and kept. Routes are the app's route templates
(``/o/{token}.gif``), never the path a client sent, so the series stay few.
An answer the handler streamed itself (the live feed, a CSV export) is not
counted: its time is how long the client kept reading, not latency.
"""

from __future__ import annotations

from time import perf_counter

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import Histogram

UNMATCHED = "unmatched"  # no route: a 404 or 405 from the router


def time_requests(histogram: Histogram, listener: str) -> Middleware:
    """A middleware observing each request's time in histogram{listener, route}."""
    children: dict[str, Histogram] = {}

    def child(request: web.Request) -> Histogram:
        resource = request.match_info.route.resource
        route = UNMATCHED if resource is None else resource.canonical
        found = children.get(route)
        if found is None:
            found = children[route] = histogram.labels(listener, route)
        return found

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = perf_counter()
        streamed = False
        try:
            response = await handler(request)
            streamed = response.prepared
            return response
        finally:
            if not streamed:
                child(request).observe(perf_counter() - start)

    return timed


def add_request_timing(app: web.Application, histogram: Histogram, listener: str) -> None:
    """Append the timing middleware (after those already installed: they stay outside)."""
    app.middlewares.append(time_requests(histogram, listener))
