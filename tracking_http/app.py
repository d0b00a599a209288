"""create_tracking_app / create_admin_app: routes and start-up only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from relay.core.config import Config, TrackingConfig
from relay.core.metrics import Metrics
from relay.core.store import Store
from relay.core.tokens import MAX_TOKEN_CHARS, TokenCodec
from tracking_http.admin.api import AdminViews
from tracking_http.admin.auth import bearer_auth
from tracking_http.admin.event_routes import add_event_api
from tracking_http.admin.metrics_view import metrics_handler
from tracking_http.admin.openapi import tracking_openapi_handler
from tracking_http.admin.privacy_views import PrivacyViews
from tracking_http.admin.routes import add_dashboard
from tracking_http.admin.tags_api import add_tag_api
from tracking_http.guard import guard_app
from tracking_http.headers import SECURITY_HEADERS, add_security_headers
from tracking_http.health import RunState, add_health
from tracking_http.latency import add_request_timing
from tracking_http.notify import EventBroker, EventSink
from tracking_http.public import PublicViews

# Tracking requests are bodiless GETs; a body, a long header or many of them is abuse.
# The request line must still fit the longest token the codec makes.
TRACKING_HANDLER_LIMITS = {
    "max_line_size": MAX_TOKEN_CHARS + 256,
    "max_field_size": 8190,
    "max_headers": 64,
}
TRACKING_MAX_BODY = 1024
DATA_CHECK_INTERVAL = 30.0  # seconds between looks at the network data files' stamps
ReloadNetworks = Callable[..., Awaitable[bool]]
# The tracking app's "read the network data again" (SIGHUP in relay.cli).
RELOAD_NETWORKS: web.AppKey[ReloadNetworks] = web.AppKey("reload_networks")
Reconfigure = Callable[[TrackingConfig], Awaitable[bool]]
RECONFIGURE: web.AppKey[Reconfigure] = web.AppKey("reconfigure")
log = logging.getLogger("tracking_http.app")
ADMIN_MAX_BODY = 64 * 1024
# SECURITY_HEADERS (tracking_http.headers) is on every answer of both apps.
__all__ = ["SECURITY_HEADERS", "create_admin_app", "create_tracking_app"]


def create_tracking_app(
    config: Config,
    store: Store,
    codec: TokenCodec,
    on_recorded: EventSink | None = None,
    clock: Callable[[], float] = time.time,
    state: RunState | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The public app: pixel, click, healthz; on_recorded gets each stored event (live feed).

    clock: when a hit happened
    (another one replays recorded traffic at its own pace).
    """
    app = web.Application(client_max_size=TRACKING_MAX_BODY, handler_args=TRACKING_HANDLER_LIMITS)
    views = PublicViews(config.tracking, store, codec, clock)
    views.recorder.on_recorded = on_recorded
    app.router.add_get("/o/{token}.gif", views.pixel)
    app.router.add_get("/c/{token}", views.click)
    add_health(app, store, state or RunState())
    app.on_response_prepare.append(add_security_headers)
    guard_app(app)
    if metrics is not None:  # relay_http_request_duration_seconds{listener="tracking"}
        add_request_timing(app, metrics.http_latency, "tracking")
    app[RELOAD_NETWORKS] = views.recorder.reload_networks
    app[RECONFIGURE] = views.recorder.reconfigure

    async def drain(_app: web.Application) -> None:
        await views.recorder.drain()

    async def watch_data(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_watch_networks(views.recorder.reload_networks))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.on_shutdown.append(drain)
    if config.tracking.classify:
        app.cleanup_ctx.append(watch_data)
    return app


async def _watch_networks(reload: ReloadNetworks) -> None:
    """`relay update-data` replaces files under a running server: it notices by itself."""
    while True:
        await asyncio.sleep(DATA_CHECK_INTERVAL)
        try:
            await reload()
        except Exception:  # one bad look must not end the watching
            log.exception("network data: could not check for new files")


def create_admin_app(
    config: Config,
    store: Store,
    metrics: Metrics | None = None,
    broker: EventBroker | None = None,
    state: RunState | None = None,
) -> web.Application:
    """The admin app: the dashboard, the bearer-token JSON API and /metrics."""
    app = web.Application(
        client_max_size=ADMIN_MAX_BODY,
        middlewares=[bearer_auth(config.admin)],
    )
    views = AdminViews(store)
    add_dashboard(app, config.admin, store)
    app.router.add_get("/api/messages", views.list_messages)
    app.router.add_get("/api/messages/{id}", views.message_detail)
    add_tag_api(app, store)
    privacy = PrivacyViews(store)
    app.router.add_get("/api/messages/{id}/raw", privacy.raw_message)
    app.router.add_delete("/api/contacts/{address}", privacy.erase_contact)
    metrics = metrics or Metrics()
    app.router.add_get("/metrics", metrics_handler(metrics, store))
    add_health(app, store, state or RunState())
    add_event_api(app, store, broker or EventBroker())
    tracking_doc = tracking_openapi_handler(config.tracking.base_url)
    app.router.add_get("/api/tracking-openapi.json", tracking_doc)
    app.on_response_prepare.append(add_security_headers)
    guard_app(app)
    add_request_timing(app, metrics.http_latency, "admin")
    return app
