"""Rendering dashboard pages: one jinja2 environment, autoescaped, strict.

Autoescape is on for every template, so a subject or address carrying HTML
is shown as text. Pages get their own Content-Security-Policy: scripts,
styles and images only from this app (no inline script, no CDN), which
also stops any markup that might slip through from running.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from tracking_http.admin import session
from tracking_http.admin.forms import FormGuard

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'"
)
MAX_TEXT = 200  # long user agents and URLs are cut in tables


def when(ts: float | None) -> str:
    """Unix time as ``2026-11-27 10:00:05`` UTC; an em dash for never."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hms(ts: float) -> str:
    """The time of day (UTC) the live feed shows: ``10:00:05``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def pct(rate: float) -> str:
    """A rate (0.0 to 1.0) as a whole percentage, or one decimal below 10 %: ``42%``."""
    value = 100.0 * rate
    return f"{value:.1f}%" if 0 < value < 10 else f"{value:.0f}%"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def create_templates() -> jinja2.Environment:
    """The dashboard's templates, from the package (no file paths in config)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tracking_http.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["iso"] = iso
    env.filters["clip"] = clip
    env.filters["hms"] = hms
    env.filters["pct"] = pct
    return env


class Pages:
    """Renders templates for one admin app; knows the token to make the CSRF value."""

    def __init__(
        self, templates: jinja2.Environment, token: str, guard: FormGuard | None = None
    ) -> None:
        self.templates = templates
        self._token = token
        self.guard = guard or FormGuard(token, open_mode=False)

    def render(
        self, request: web.Request, name: str, status: int = 200, **context: Any
    ) -> web.Response:
        """A page with the logout form's CSRF value (when logged in by cookie) and safe headers."""
        cookie = request.cookies.get(session.COOKIE, "")
        valid = session.is_valid(cookie, self._token)
        csrf = session.csrf_value(cookie, self._token) if valid else ""
        action_csrf = self.guard.value(request)
        body = self.templates.get_template(name).render(
            csrf=csrf, action_csrf=action_csrf, **context
        )
        return web.Response(
            status=status,
            text=body,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": PAGE_CSP},
        )
