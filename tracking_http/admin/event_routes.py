"""The event side of the JSON API on the admin app: events, contacts, CSV, live feed, OpenAPI."""

from __future__ import annotations

from aiohttp import web

from relay.core.store import Store
from tracking_http.admin.events_api import EventViews
from tracking_http.admin.openapi import openapi_json
from tracking_http.admin.stream import LiveFeed
from tracking_http.notify import EventBroker, StoreFollower

LIVE_FEED = web.AppKey("live_feed", LiveFeed)
FOLLOWER = web.AppKey("feed_follower", StoreFollower)


def add_event_api(app: web.Application, store: Store, broker: EventBroker) -> None:
    """Routes, plus the follower that feeds the broker events other processes record.

    The broker is closed at shutdown, so open streams end instead of holding it up.
    """
    views = EventViews(store)
    feed = LiveFeed(store, broker)
    follower = StoreFollower(store, broker)
    app[LIVE_FEED] = feed
    app[FOLLOWER] = follower
    app.router.add_get("/api/events", views.list_events)
    app.router.add_get("/api/events/stream", feed.stream)
    app.router.add_get("/api/contacts/{address}", views.contact)
    app.router.add_get("/api/export.csv", views.export_csv)
    app.router.add_get("/api/openapi.json", openapi_json)

    async def start(_app: web.Application) -> None:
        await follower.start()

    async def stop(_app: web.Application) -> None:
        broker.close()
        await follower.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
