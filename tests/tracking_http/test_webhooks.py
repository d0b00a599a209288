"""Webhooks: signed POSTs to a real local receiver, retries, restarts, and no slow pixels."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from relay.core.config import Config, StoreConfig, WebhookConfig
from relay.core.metrics import Metrics
from relay.core.models import DeliveryOutcome
from relay.core.store import Store, open_store
from relay.core.tokens import TokenCodec
from relay.webhooks import GIVE_UP_AFTER, WebhookDispatcher, next_attempt
from tracking_http.app import create_tracking_app

BOB, CAROL = "bob@example.net", "carol@example.org"
GUARD = 20.0  # seconds before a hung test fails instead of hanging; not a measurement
RAW_KEY = secrets.token_bytes(24)
WHSEC = "whsec_" + base64.b64encode(RAW_KEY).decode()
PLAIN = "a plain shared secret"


def verify(secret: str, headers: Any, body: bytes) -> bool:
    """Standard Webhooks verification, written from the spec (not the relay's signer)."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    content = b".".join(
        [headers["webhook-id"].encode(), headers["webhook-timestamp"].encode(), body]
    )
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    given = [s.split(",", 1)[1] for s in headers["webhook-signature"].split(" ")]
    fresh = abs(time.time() - int(headers["webhook-timestamp"])) < 300
    return fresh and any(hmac.compare_digest(expected, g) for g in given)


@dataclass
class Receiver:
    """A local endpoint that records each POST and answers the next scripted status."""

    statuses: list[int] = field(default_factory=list)
    posts: list[tuple[Any, bytes]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((request.headers.copy(), body))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)

    async def wait_for(self, count: int) -> list[tuple[Any, bytes]]:
        async with asyncio.timeout(GUARD):
            while len(self.posts) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.posts


async def start_receiver(receiver: Receiver, port: int | None = None) -> TestServer:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def settled(store: Store) -> None:
    """Until the dispatcher has recorded every answer (a 2xx deletes the row)."""
    async with asyncio.timeout(GUARD):
        while (await store.webhook_backlog())["pending"]:  # noqa: ASYNC110 - the store is polled
            await asyncio.sleep(0.02)


async def test_signed_posts_go_to_each_endpoint_that_wants_the_event(
    store: Store, spooled: Any
) -> None:
    receiver = Receiver()
    server = await start_receiver(receiver)
    a, b = str(server.make_url("/hook?to=a")), str(server.make_url("/hook?to=b"))
    hooks = [WebhookConfig(a, WHSEC, ("open", "delivered")), WebhookConfig(b, PLAIN, ("click",))]
    await store.record_event(spooled.event(BOB, klass="proxy", reasons=("apple_mpp",)))
    await store.record_event(spooled.event(BOB))
    await store.record_event(spooled.event(CAROL, "click", url="https://x.example/", link_index=0))
    await store.record_outcome(spooled.copies[BOB].id, DeliveryOutcome("delivered", "250 ok"), None)
    dispatcher = WebhookDispatcher(hooks, store, poll_interval=0.02)
    await dispatcher.start()
    try:
        posts = await receiver.wait_for(4)
        await settled(store)
    finally:
        await dispatcher.stop()
        await server.close()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for headers, body in posts:
        payload = json.loads(body)
        secret = PLAIN if payload["type"] == "click" else WHSEC
        assert verify(secret, headers, body), payload
        assert not verify("wrong", headers, body)
        by_type.setdefault(payload["type"], []).append(payload)
    assert sorted(by_type) == ["click", "delivered", "open"] and len(by_type["open"]) == 2
    proxy, human = sorted(by_type["open"], key=lambda p: p["data"]["event_id"])
    assert proxy["data"]["class"] == "proxy" and proxy["data"]["is_machine"] is True
    assert proxy["data"]["reasons"] == ["apple_mpp"] and proxy["data"]["first"] is True
    assert human["data"]["class"] == "human" and human["data"]["is_machine"] is False
    assert human["data"]["first"] is True  # the first a person made; the proxy's does not count
    assert human["data"]["recipient"] == BOB and human["data"]["inferred"] is False
    assert human["data"]["message_id"] == spooled.message_id
    assert human["timestamp"].endswith("Z")
    [click] = by_type["click"]
    assert click["data"]["url"] == "https://x.example/" and click["data"]["recipient"] == CAROL
    [delivered] = by_type["delivered"]
    assert delivered["data"]["recipient"] == BOB and delivered["data"]["reply"] == "250 ok"
    assert (await store.webhook_backlog()) == {"queued": 0, "pending": 0, "failed": 0}


async def test_a_500_is_retried_with_the_same_id(store: Store, spooled: Any) -> None:
    receiver = Receiver(statuses=[500, 200])
    server = await start_receiver(receiver)
    metrics = Metrics()
    hook = WebhookConfig(str(server.make_url("/hook")), PLAIN, ("open",))
    dispatcher = WebhookDispatcher([hook], store, metrics, poll_interval=0.02)
    dispatcher.retry = lambda attempts, created, now: now  # due again at once
    await store.record_event(spooled.event(BOB))
    await dispatcher.start()
    try:
        first, second = await receiver.wait_for(2)
        await settled(store)
    finally:
        await dispatcher.stop()
        await server.close()
    assert first[0]["webhook-id"] == second[0]["webhook-id"] and first[1] == second[1]
    assert verify(PLAIN, second[0], second[1])
    count = metrics.registry.get_sample_value
    assert count("relay_webhook_deliveries_total") == 1
    assert count("relay_webhook_failures_total", {"final": "false"}) == 1


def test_backoff_grows_and_gives_up_after_a_day() -> None:
    now = 1_000_000.0
    delays = [next_attempt(n, now, now) for n in range(1, 12)]
    assert all(d is not None for d in delays)
    assert 48 <= delays[0] - now <= 72  # type: ignore[operator]
    assert delays[3] - now > delays[0] - now  # type: ignore[operator]
    assert max(d - now for d in delays) <= 3600 * 1.2  # type: ignore[operator]
    assert next_attempt(5, now - GIVE_UP_AFTER, now) is None
    assert next_attempt(5, now - GIVE_UP_AFTER + 10, now) == now + 10  # the last try: the deadline


async def test_pending_rows_are_sent_after_a_restart(spooled: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "relay.db")
    receiver = Receiver()
    server = await start_receiver(receiver)
    url, port = str(server.make_url("/hook")), server.port
    await server.close()  # the endpoint is down
    first = open_store(StoreConfig(path=path))
    await first.open()
    await first.record_event(spooled.event(BOB))
    dispatcher = WebhookDispatcher([WebhookConfig(url, WHSEC, ("open",))], first)
    dispatcher.retry = lambda attempts, created, now: now
    await dispatcher.start(background=False)
    assert await dispatcher.run_once() == 0  # connection refused: stays in the outbox
    await dispatcher.stop()
    assert (await first.webhook_backlog())["pending"] == 1
    await first.close()

    server = await start_receiver(receiver, port=port)
    again = open_store(StoreConfig(path=path))
    await again.open()
    dispatcher = WebhookDispatcher(
        [WebhookConfig(url, WHSEC, ("open",))], again, poll_interval=0.02
    )
    await dispatcher.start()
    try:
        [(headers, body)] = await receiver.wait_for(1)
    finally:
        await dispatcher.stop()
        await again.close()
        await server.close()
    assert verify(WHSEC, headers, body) and json.loads(body)["data"]["recipient"] == BOB


async def test_a_hanging_endpoint_does_not_hold_up_pixels(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    receiver = Receiver(hold=asyncio.Event())
    server = await start_receiver(receiver)
    hook = WebhookConfig(str(server.make_url("/hook")), PLAIN, ("open",))
    dispatcher = WebhookDispatcher([hook], store, poll_interval=0.02)
    tracking = await serve(create_tracking_app(Config(), store, codec))
    pixel = f"/o/{codec.open_token(spooled.copies[BOB].id)}.gif"
    await dispatcher.start()
    try:
        assert (await tracking.get(pixel)).status == 200
        await receiver.wait_for(1)  # the POST of that open is now stuck in the receiver
        for _ in range(5):
            assert (await tracking.get(pixel)).status == 200
        assert len(await store.list_events(kind="open")) == 6
    finally:
        receiver.hold.set()  # type: ignore[union-attr]
        await dispatcher.stop()
        await server.close()


async def test_no_endpoint_no_queue_row_and_endpoints_turn_it_back_on(
    store: Store, spooled: Any
) -> None:
    """Without webhooks no event or outcome is queued for them: no work per pixel."""
    quiet = WebhookDispatcher([], store)
    await quiet.start(background=False)
    await store.record_event(spooled.event(BOB))
    await store.record_outcome(spooled.copies[CAROL].id, DeliveryOutcome("delivered", "250"), None)
    assert (await store.webhook_backlog())["queued"] == 0
    await quiet.stop()
    hook = WebhookConfig("http://127.0.0.1:9/hook", PLAIN, ("open", "delivered"))
    wanting = WebhookDispatcher([hook], store)
    await wanting.start(background=False)
    await store.record_event(spooled.event(BOB))
    assert (await store.webhook_backlog())["queued"] == 1
    await wanting.stop()
