"""create_app(config): routes and start-up only."""

from __future__ import annotations

from aiohttp import web

from relay.core.config import Config
from relay.core.store import Store
from relay.core.tokens import TokenCodec


def create_tracking_app(config: Config, store: Store, codec: TokenCodec) -> web.Application:
    """The public app: pixel, click, healthz."""
    raise NotImplementedError


def create_admin_app(config: Config, store: Store) -> web.Application:
    """The admin app: bearer-token JSON API (dashboard comes later)."""
    raise NotImplementedError
