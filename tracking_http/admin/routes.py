"""The dashboard's routes on the admin app: pages, login, and its own CSS and JS."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from relay.core.config import AdminConfig
from relay.core.store import Store
from tracking_http.admin.auth import open_without_token
from tracking_http.admin.dashboard import DashboardViews
from tracking_http.admin.forms import FormGuard
from tracking_http.admin.login import LoginViews
from tracking_http.admin.pages import Pages, create_templates
from tracking_http.admin.queue_views import QueueViews
from tracking_http.admin.tag_pages import TagPages

STATIC = Path(__file__).resolve().parent / "static"
# The dashboard's own files and their types: fixed here, not guessed from the host's
# mime.types (which says application/javascript on some systems, text/javascript on others).
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


def static_files() -> dict[str, tuple[bytes, str]]:
    """name -> (content, media type), read once when the app is built."""
    return {
        path.name: (path.read_bytes(), STATIC_TYPES[path.suffix])
        for path in sorted(STATIC.iterdir())
        if path.suffix in STATIC_TYPES
    }


def static_handler() -> Handler:
    """GET /static/{filename}: one of the files above (ETag, 304), else 404."""
    files = static_files()
    tags = {
        name: '"' + hashlib.sha256(body).hexdigest()[:16] + '"' for name, (body, _) in files.items()
    }

    async def handle(request: web.Request) -> web.Response:
        name = request.match_info["filename"]
        if name not in files:
            return web.Response(status=404, text="no such file\n")
        body, media = files[name]
        headers = {hdrs.ETAG: tags[name], hdrs.CACHE_CONTROL: "no-cache"}
        if request.headers.get(hdrs.IF_NONE_MATCH) == tags[name]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type=media, charset="utf-8", headers=headers)

    return handle


def add_dashboard(app: web.Application, config: AdminConfig, store: Store) -> None:
    """Every asset is served from the package: the dashboard works offline, with no CDN."""
    pages = Pages(
        create_templates(), config.token, FormGuard(config.token, open_without_token(config))
    )
    login = LoginViews(config, pages)
    views = DashboardViews(store, pages)
    queue = QueueViews(store, pages)
    tags = TagPages(store, pages)
    app.router.add_get("/login", login.form)
    app.router.add_post("/login", login.login)
    app.router.add_post("/logout", login.logout)
    app.router.add_get("/", views.messages)
    app.router.add_get("/messages/{id}", views.message)
    app.router.add_get("/messages/{id}/preview", views.preview)
    app.router.add_get("/contacts/{address}", views.contact)
    app.router.add_get("/charts", views.charts)
    app.router.add_get("/feed", views.feed)
    app.router.add_get("/tags", tags.tags)
    app.router.add_get("/tags/{tag}", tags.tag)
    app.router.add_get("/queue", queue.queue)
    app.router.add_post("/queue/retry", queue.retry)
    app.router.add_post("/queue/delete", queue.delete)
    app.router.add_get("/webhooks", queue.webhooks)
    app.router.add_post("/webhooks/retry", queue.retry_webhooks)
    app.router.add_get("/static/{filename}", static_handler())
