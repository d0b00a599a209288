"""Fixtures: a real SQLite store in tmp_path, real tokens, real aiohttp servers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from relay.core.models import Copy, CopySpec, NewMessage, TrackingDecision
from relay.core.store import Store
from relay.core.tokens import TokenCodec

RECIPIENTS = ("bob@example.net", "carol@example.org")


@dataclass
class Spooled:
    message_id: str
    copies: dict[str, Copy]  # by recipient


@pytest.fixture
async def codec(store: Store) -> TokenCodec:
    return TokenCodec(await store.secrets())


@pytest.fixture
async def spooled(store: Store) -> Spooled:
    """One message to two recipients, one copy each, as the SMTP front would spool it."""
    message = NewMessage(
        mail_from="alice@example.com",
        rcpt_tos=RECIPIENTS,
        raw=b"From: alice@example.com\r\nSubject: Offer\r\n\r\n<p>hi</p>\r\n",
        received_at=time.time(),
        client_addr="127.0.0.1",
        auth_user=None,
        sender="alice@example.com",
        subject="Offer",
        message_id_header="<offer-1@example.com>",
        decision=TrackingDecision(opens=True, clicks=True),
    )
    specs = [CopySpec(recipient=r, rcpt_tos=(r,)) for r in RECIPIENTS]
    message_id = await store.spool(message, specs)
    due = await store.due_copies(time.time() + 60, 100)
    copies = {c.recipient or "": c for c in due if c.message_id == message_id}
    assert set(copies) == set(RECIPIENTS)
    return Spooled(message_id=message_id, copies=copies)


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
