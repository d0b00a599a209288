"""The admin API over a real socket: bearer auth and the SPEC section 8 shapes."""

from __future__ import annotations

import ipaddress
import re
import time
from typing import Any

from support.messages import BOB, CAROL, SHARED, spool

from relay.core.config import AdminConfig, Config, HostPort, TrackingConfig
from relay.core.models import DeliveryOutcome
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.app import create_admin_app, create_tracking_app

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LINKS = ["https://shop.example.com/p?id=1&ref=mail", "https://example.com/about"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3"


def admin_config(token: str = TOKEN, host: str = "127.0.0.1") -> Config:
    return Config(admin=AdminConfig(listen=(HostPort(host, 8081),), token=token))


async def test_api_refuses_missing_or_wrong_token(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ):
        for path in ("/api/messages", "/api/messages/whatever"):
            resp = await client.get(path, headers=headers)
            assert resp.status == 401, (path, headers)
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        page = await client.get("/", headers=headers, allow_redirects=False)
        assert (page.status, page.headers["Location"]) == (303, "/login")
    assert (await client.get("/", headers=AUTH)).status == 200
    assert (await client.get("/api/messages", headers=AUTH)).status == 200


async def test_empty_token_allowed_only_on_loopback(store: Store, serve: Any) -> None:
    loopback = await serve(create_admin_app(admin_config(token=""), store))
    assert (await loopback.get("/api/messages")).status == 200
    public = await serve(create_admin_app(admin_config(token="", host="0.0.0.0"), store))
    assert (await public.get("/api/messages")).status == 401
    assert (await public.get("/api/messages", headers={"Authorization": "Bearer "})).status == 401


async def test_bad_params_and_unknown_message(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    for query in ("limit=0", "limit=abc", "limit=-1", "limit=100000", "cursor=" + "c" * 300):
        resp = await client.get(f"/api/messages?{query}", headers=AUTH)
        assert resp.status == 400, query
        assert "error" in await resp.json()
    resp = await client.get("/api/messages/no-such-id", headers=AUTH)
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    assert "error" in await resp.json()


async def make_events(store: Store, codec: TokenCodec, spooled: Any, serve: Any) -> None:
    """Through the real tracking app: bob opens twice and clicks; carol opens from the office."""
    config = Config(
        tracking=TrackingConfig(
            trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
            ignore_networks=(ipaddress.ip_network("192.0.2.0/24"),),
            bot_click_window=0,  # the click follows delivery at once
        )
    )
    bob, carol = spooled.copies[BOB], spooled.copies[CAROL]
    await store.record_links(bob.id, LINKS)
    await store.record_links(carol.id, LINKS)
    await store.record_outcome(bob.id, DeliveryOutcome("delivered", "250 ok"), None)
    client = await serve(create_tracking_app(config, store, codec))
    outside = {"X-Forwarded-For": "198.51.100.7", "User-Agent": THUNDERBIRD}
    for _ in range(2):  # within a minute of each other: counted once
        await client.get(f"/o/{codec.open_token(bob.id)}.gif", headers=outside)
    click = await client.get(
        f"/c/{codec.click_token(bob.id, 0, LINKS[0])}", headers=outside, allow_redirects=False
    )
    assert click.status == 302
    office = {"X-Forwarded-For": "192.0.2.10", "User-Agent": THUNDERBIRD}
    await client.get(f"/o/{codec.open_token(carol.id)}.gif", headers=office)


async def test_messages_list_shape_and_counts(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    await make_events(store, codec, spooled, serve)
    client = await serve(create_admin_app(admin_config(), store))
    resp = await client.get("/api/messages?limit=10", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["next"] is None
    [message] = body["messages"]
    assert message["id"] == spooled.message_id
    assert (message["sender"], message["subject"]) == ("alice@example.com", "Offer")
    assert ISO.match(message["created_at"])
    assert abs(time.time() - _parse_iso(message["created_at"])) < 120
    assert message["recipients"] == 2
    assert message["opens"]["human"] == 1  # bob's two opens within a minute count once
    assert message["opens"]["unique_human"] == 1
    assert message["opens"]["self"] == 1
    assert message["clicks"]["human"] == 1
    assert message["clicks"]["unique_human"] == 1
    assert message["states"] == {"delivered": 1, "queued": 1}
    assert message["state"] == "mixed"


async def test_message_detail_shape_and_counts(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    await make_events(store, codec, spooled, serve)
    client = await serve(create_admin_app(admin_config(), store))
    resp = await client.get(f"/api/messages/{spooled.message_id}", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["id"] == spooled.message_id
    assert body["tracking"]["opens"] is True and body["tracking"]["clicks"] is True
    recipients = {r["address"]: r for r in body["recipients"]}
    bob, carol = recipients[BOB], recipients[CAROL]
    assert bob["state"] == "delivered" and carol["state"] == "queued"
    zero_opens = {"human": 0, "inferred": 0, "proxy": 0, "bot": 0, "prefetch": 0, "self": 0}
    zero_clicks = {"human": 0, "bot": 0, "prefetch": 0, "self": 0}
    assert bob["opens"] == {**zero_opens, "human": 1}
    assert (bob["opened"], carol["opened"], bob["replies"]) == ("yes", "no", 0)
    assert bob["clicks"] == {**zero_clicks, "human": 1}
    assert carol["opens"] == {**zero_opens, "self": 1}
    assert carol["clicks"] == zero_clicks
    assert ISO.match(bob["first_open"]) and ISO.match(bob["last_open"])
    bob_links = {link["url"]: link["clicks"] for link in bob["links"]}
    assert bob_links[LINKS[0]] == {**zero_clicks, "human": 1, "unique_human": 1}
    assert all(link["clicks"]["human"] == 0 for link in carol["links"])
    assert (bob["possibly_forwarded"], carol["possibly_forwarded"]) == (False, False)
    message_links = {link["url"]: link["clicks"] for link in body["links"]}
    assert message_links[LINKS[0]] == {**zero_clicks, "human": 1, "unique_human": 1}
    assert body["someone"]["opens"] == zero_opens
    assert body["someone"]["clicks"] == zero_clicks


def _parse_iso(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


async def test_messages_pagination(store: Store, spooled: Any, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    seen: list[str] = []
    resp = await client.get("/api/messages?limit=1", headers=AUTH)
    body = await resp.json()
    seen += [m["id"] for m in body["messages"]]
    assert body["next"] is None and seen == [spooled.message_id]
    resp = await client.get("/api/messages?cursor=not*a*cursor", headers=AUTH)
    assert resp.status == 400


async def test_shared_copy_counts_as_someone(store: Store, codec: TokenCodec, serve: Any) -> None:
    spooled = await spool(store, subject="shared", decision=SHARED)
    message_id, shared = spooled.message_id, spooled[""]
    tracking = await serve(create_tracking_app(Config(), store, codec))
    pixel = f"/o/{codec.open_token(shared.id)}.gif"
    await tracking.get(pixel, headers={"User-Agent": THUNDERBIRD})
    [event] = await store.list_events()
    assert event.recipient is None
    client = await serve(create_admin_app(admin_config(), store))
    body = await (await client.get(f"/api/messages/{message_id}", headers=AUTH)).json()
    assert body["tracking"]["per_recipient"] is False
    assert body["someone"]["opens"]["human"] == 1
    assert all(r["opens"]["human"] == 0 for r in body["recipients"])
