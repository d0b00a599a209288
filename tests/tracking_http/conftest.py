"""Fixtures: a real SQLite store in tmp_path, real tokens, real aiohttp servers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.messages import BOB, Spooled, spool

from relay.core.models import DeliveryOutcome
from relay.core.store import Store
from relay.core.tokens import TokenCodec


@pytest.fixture
async def codec(store: Store) -> TokenCodec:
    return TokenCodec(await store.secrets())


@pytest.fixture
async def spooled(store: Store) -> Spooled:
    """One message to two recipients, one copy each, as the SMTP front would spool it."""
    return await spool(
        store,
        raw=b"From: alice@example.com\r\nSubject: Offer\r\n\r\n<p>hi</p>\r\n",
        subject="Offer",
        message_id_header="<offer-1@example.com>",
    )


@pytest.fixture
async def delivered_bob(store: Store, spooled: Spooled) -> int:
    """The id of bob's copy of `spooled`, recorded delivered ("250 ok") before any hit."""
    bob = spooled.copies[BOB].id
    await store.record_outcome(bob, DeliveryOutcome("delivered", "250 ok"), None)
    return bob


ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def serve() -> AsyncIterator[ClientFactory]:
    """Start an app on a real 127.0.0.1 socket and hand back a client for it."""
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(app: web.Application) -> TestClient[web.Request, web.Application]:
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()
