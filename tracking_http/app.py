"""create_tracking_app / create_admin_app: routes and start-up only.

Each app's routes are one table here (tracking_routes, admin_routes); the
handlers live in tracking_http.public and tracking_http.admin.
"""

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
from tracking_http.admin.assets import static_handler
from tracking_http.admin.auth import bearer_auth, open_without_token
from tracking_http.admin.dashboard import DashboardViews
from tracking_http.admin.events_api import EventViews
from tracking_http.admin.forms import FormGuard
from tracking_http.admin.login import LoginViews
from tracking_http.admin.metrics_view import metrics_handler
from tracking_http.admin.openapi import openapi_json, tracking_openapi_handler
from tracking_http.admin.pages import Pages, create_templates
from tracking_http.admin.privacy_views import PrivacyViews
from tracking_http.admin.queue_views import QueueViews
from tracking_http.admin.stream import LiveFeed
from tracking_http.admin.tag_pages import TagPages
from tracking_http.admin.tags_api import TagViews
from tracking_http.guard import guard_app
from tracking_http.headers import SECURITY_HEADERS, add_security_headers
from tracking_http.health import Health, RunState
from tracking_http.latency import add_request_timing
from tracking_http.notify import EventBroker, EventSink, StoreFollower
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
LIVE_FEED = web.AppKey("live_feed", LiveFeed)
FOLLOWER = web.AppKey("feed_follower", StoreFollower)
log = logging.getLogger("tracking_http.app")
ADMIN_MAX_BODY = 64 * 1024
# SECURITY_HEADERS (tracking_http.headers) is on every answer of both apps.
__all__ = ["SECURITY_HEADERS", "create_admin_app", "create_tracking_app"]


def tracking_routes(views: PublicViews, health: Health) -> list[web.RouteDef]:
    """Every route of the public app."""
    return [
        web.get("/o/{token}.gif", views.pixel),
        web.get("/c/{token}", views.click),
        web.get("/healthz", health.healthz),
        web.get("/readyz", health.readyz),
    ]


def admin_routes(
    config: Config, store: Store, metrics: Metrics, feed: LiveFeed, health: Health
) -> list[web.RouteDef]:
    """Every route of the admin app: the dashboard's pages, then the JSON API.

    The pages take the session cookie, the API the bearer token
    (tracking_http.admin.auth); tracking_http.admin.openapi describes each one.
    """
    pages = Pages(
        create_templates(),
        config.admin.token,
        FormGuard(config.admin.token, open_without_token(config.admin)),
    )
    login = LoginViews(config.admin, pages)
    dashboard = DashboardViews(store, pages)
    queue = QueueViews(store, pages)
    tag_pages = TagPages(store, pages)
    api = AdminViews(store)
    events = EventViews(store)
    tags = TagViews(store)
    privacy = PrivacyViews(store)
    return [
        web.get("/login", login.form),
        web.post("/login", login.login),
        web.post("/logout", login.logout),
        web.get("/", dashboard.messages),
        web.get("/messages/{id}", dashboard.message),
        web.get("/messages/{id}/preview", dashboard.preview),
        web.get("/contacts/{address}", dashboard.contact),
        web.get("/charts", dashboard.charts),
        web.get("/feed", dashboard.feed),
        web.get("/tags", tag_pages.tags),
        web.get("/tags/{tag}", tag_pages.tag),
        web.get("/queue", queue.queue),
        web.post("/queue/retry", queue.retry),
        web.post("/queue/delete", queue.delete),
        web.get("/webhooks", queue.webhooks),
        web.post("/webhooks/retry", queue.retry_webhooks),
        web.get("/static/{filename}", static_handler()),
        web.get("/api/messages", api.list_messages),
        web.get("/api/messages/{id}", api.message_detail),
        web.get("/api/messages/{id}/raw", privacy.raw_message),
        web.get("/api/messages/{id}/clients", tags.message_clients),
        web.get("/api/contacts/{address}", events.contact),
        web.delete("/api/contacts/{address}", privacy.erase_contact),
        web.get("/api/events", events.list_events),
        web.get("/api/events/stream", feed.stream),
        web.get("/api/export.csv", events.export_csv),
        web.get("/api/tags", tags.list_tags),
        web.get("/api/tags/{tag}", tags.tag_report),
        web.get("/api/tags/{tag}/clients", tags.tag_clients),
        web.get("/api/openapi.json", openapi_json),
        web.get("/api/tracking-openapi.json", tracking_openapi_handler(config.tracking.base_url)),
        web.get("/metrics", metrics_handler(metrics, store)),
        web.get("/healthz", health.healthz),
        web.get("/readyz", health.readyz),
    ]


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
    app.router.add_routes(tracking_routes(views, Health(store, state or RunState())))
    app.on_response_prepare.append(add_security_headers)
    guard_app(app)
    if metrics is not None:  # relay_http_request_duration_seconds{listener="tracking"}
        add_request_timing(app, metrics.http_latency, "tracking")
    app[RELOAD_NETWORKS] = views.recorder.reload_networks
    app[RECONFIGURE] = views.recorder.reconfigure

    async def watch_data(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_watch_networks(views.recorder.reload_networks))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

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
    metrics = metrics or Metrics()
    broker = broker or EventBroker()
    feed = LiveFeed(store, broker)
    health = Health(store, state or RunState())
    app.router.add_routes(admin_routes(config, store, metrics, feed, health))
    _follow_store(app, store, broker, feed)
    app.on_response_prepare.append(add_security_headers)
    guard_app(app)
    add_request_timing(app, metrics.http_latency, "admin")
    return app


def _follow_store(app: web.Application, store: Store, broker: EventBroker, feed: LiveFeed) -> None:
    """The follower feeds the broker events other processes record.

    The broker is closed at shutdown, so open streams end instead of holding it up.
    """
    follower = StoreFollower(store, broker)
    app[LIVE_FEED] = feed
    app[FOLLOWER] = follower

    async def start(_app: web.Application) -> None:
        await follower.start()

    async def stop(_app: web.Application) -> None:
        broker.close()
        await follower.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
