"""The dashboard's routes on the admin app: pages, login, and its own CSS and JS."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from relay.core.config import AdminConfig
from relay.core.store import Store
from tracking_http.admin.dashboard import DashboardViews
from tracking_http.admin.login import LoginViews
from tracking_http.admin.pages import Pages, create_templates

STATIC = Path(__file__).resolve().parent / "static"


def add_dashboard(app: web.Application, config: AdminConfig, store: Store) -> None:
    """Every asset is served from the package: the dashboard works offline, with no CDN."""
    pages = Pages(create_templates(), config.token)
    login = LoginViews(config, pages)
    views = DashboardViews(store, pages)
    app.router.add_get("/login", login.form)
    app.router.add_post("/login", login.login)
    app.router.add_post("/logout", login.logout)
    app.router.add_get("/", views.messages)
    app.router.add_get("/messages/{id}", views.message)
    app.router.add_get("/contacts/{address}", views.contact)
    app.router.add_get("/charts", views.charts)
    app.router.add_get("/feed", views.feed)
    app.router.add_static("/static/", STATIC, append_version=False)
