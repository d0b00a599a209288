"""Classification on the recording path: a labelled set of requests through the real server.

Each request goes over a real socket to the tracking app, with the real store
and real tokens; the stored event's class and reasons are checked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from support.messages import BOB, CAROL, spool

from relay.core.config import Config, StoreConfig, TrackingConfig
from relay.core.models import Event, TrackingDecision
from relay.core.store import Store, open_store
from relay.core.store.sqlite import SQLiteStore
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from tracking_http.app import create_admin_app, create_tracking_app

URL, URL2 = "https://shop.example.com/a", "https://shop.example.com/b"
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3.1"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def tracking(**changes: Any) -> Config:
    base = TrackingConfig(trusted_proxies=LOOPBACK, **changes)
    return Config(tracking=base)


async def app(serve: Any, store: Store, codec: TokenCodec, **changes: Any) -> Any:
    return await serve(create_tracking_app(tracking(**changes), store, codec))


def headers(ua: str, ip: str = "198.51.100.20", **extra: str) -> dict[str, str]:
    return {"User-Agent": ua, "X-Forwarded-For": ip, **extra}


async def opened(client: Any, codec: TokenCodec, copy_id: int, **h: str) -> None:
    resp = await client.get(f"/o/{codec.open_token(copy_id)}.gif", headers=headers(**h))
    assert resp.status == 200


async def clicked(client: Any, codec: TokenCodec, copy_id: int, index: int = 0, **h: str) -> None:
    token = codec.click_token(copy_id, index, URL if index != 1 else URL2)
    resp = await client.get(f"/c/{token}", headers=headers(**h), allow_redirects=False)
    assert resp.status == 302


async def last(store: Store) -> Event:
    return (await store.list_events())[-1]


async def test_labelled_requests(store: Store, codec: TokenCodec, spooled: Any, serve: Any) -> None:
    scanners = (ipaddress.ip_network("203.0.113.0/24"),)
    client = await app(serve, store, codec, scanner_networks=scanners)
    bob = spooled.copies[BOB].id
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"ua": THUNDERBIRD}, "human", "ua:mail-client:Thunderbird"),
        ({"ua": GOOGLEBOT}, "bot", "ua:crawler"),
        ({"ua": ""}, "bot", "ua:empty"),
        ({"ua": "Mozilla/5.0"}, "proxy", "ua:bare-mozilla"),
        ({"ua": "HeadlessChrome/120"}, "bot", "ua:headless"),
        ({"ua": GMAIL_PROXY}, "proxy", "ua:google-image-proxy"),
        ({"ua": THUNDERBIRD, "ip": "203.0.113.9"}, "bot", "net:scanner-range"),
        ({"ua": THUNDERBIRD, "Cookie": "relay_admin=session"}, "self", "self:admin-cookie"),
        ({"ua": THUNDERBIRD, "Cookie": "relay_admin="}, "human", "ua:mail-client:Thunderbird"),
    ]
    for h, klass, reason in cases:
        await opened(client, codec, bob, **h)
        event = await last(store)
        assert (event.klass, reason in event.reasons) == (klass, True), (h, event)


async def test_classification_off_records_human(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await app(serve, store, codec, classify=False)
    await opened(client, codec, spooled.copies[BOB].id, ua=GOOGLEBOT)
    event = await last(store)
    assert (event.klass, event.reasons) == ("human", ())


async def test_honeypot_relabels_that_clients_events_of_the_message(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await app(serve, store, codec)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await opened(client, codec, bob, ua=THUNDERBIRD)
    await opened(client, codec, carol, ua=THUNDERBIRD)  # same client, other copy, same message
    await opened(client, codec, bob, ua=FIREFOX)  # another client
    await clicked(client, codec, bob, HONEYPOT_LINK_INDEX, ua=THUNDERBIRD)
    await opened(client, codec, bob, ua=THUNDERBIRD)  # after the honeypot
    events = await store.list_events()
    assert [e.klass for e in events] == ["bot", "bot", "human", "bot", "bot"]
    assert events[0].reasons[:2] == ("honeypot", "was:human")
    assert "honeypot" in events[3].reasons and "honeypot" in events[4].reasons
    assert not any(e.inferred for e in events)  # a bot's click infers nothing


async def test_human_click_without_open_infers_one(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await app(serve, store, codec)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await clicked(client, codec, bob, ua=FIREFOX)
    await clicked(client, codec, bob, ua=FIREFOX, ip="198.51.100.99")
    await opened(client, codec, carol, ua=THUNDERBIRD)
    await clicked(client, codec, carol, ua=FIREFOX)
    kinds = [(e.kind, e.recipient, e.inferred) for e in await store.list_events()]
    assert kinds == [
        ("click", BOB, False),
        ("open", BOB, True),
        ("click", BOB, False),
        ("open", CAROL, False),
        ("click", CAROL, False),
    ]
    inferred = (await store.list_events())[1]
    assert (inferred.klass, inferred.reasons) == ("human", ("inferred:click",))


async def test_fast_and_burst_clicks_are_bots(
    store: Store, codec: TokenCodec, spooled: Any, delivered_bob: int, serve: Any
) -> None:
    client = await app(serve, store, codec, bot_click_window=30.0)
    bob, carol = delivered_bob, spooled.copies[CAROL].id
    await clicked(client, codec, bob, ua=FIREFOX)
    event = await last(store)
    assert (event.klass, "click:too-fast" in event.reasons) == ("bot", True)
    await clicked(client, codec, carol, 0, ua=FIREFOX)  # not delivered: no delivery time
    assert (await last(store)).klass == "human"
    await clicked(client, codec, carol, 1, ua=FIREFOX)
    event = await last(store)
    assert (event.klass, "click:burst" in event.reasons) == ("bot", True)


async def test_senders_own_ip_soon_after_submission_is_self(
    store: Store, codec: TokenCodec, serve: Any
) -> None:
    copy = (await spool(store, (BOB,), client_addr="192.0.2.50"))[BOB]
    client = await app(serve, store, codec)
    await opened(client, codec, copy.id, ua=THUNDERBIRD, ip="192.0.2.50")
    event = await last(store)
    assert (event.klass, event.reasons[0]) == ("self", "self:sender-ip")
    await opened(client, codec, copy.id, ua=THUNDERBIRD, ip="192.0.2.51")
    assert (await last(store)).klass == "human"


async def test_ignore_networks_and_anonymised_ip(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    privacy = dataclasses.replace(Config().tracking.privacy, anonymize_ip=True)
    office = (ipaddress.ip_network("198.51.100.0/24"),)
    client = await app(serve, store, codec, ignore_networks=office, privacy=privacy)
    await opened(client, codec, spooled.copies[BOB].id, ua=THUNDERBIRD, ip="198.51.100.77")
    event = await last(store)
    assert (event.klass, event.reasons[0], event.ip) == (
        "self",
        "self:ignore-network",
        "198.51.100.0",
    )


async def test_erase_over_the_admin_api(
    store: Store, codec: TokenCodec, spooled: Any, delivered_bob: int, serve: Any
) -> None:
    client = await app(serve, store, codec)
    admin = await serve(create_admin_app(Config(), store))
    bob = delivered_bob
    await opened(client, codec, bob, ua=THUNDERBIRD)  # caches the copy with bob
    await opened(client, codec, spooled.copies[CAROL].id, ua=THUNDERBIRD)
    resp = await admin.delete(f"/api/contacts/{BOB.upper()}")
    assert resp.status == 200
    body = await resp.json()
    assert body["erased"] == {
        "events": 1,
        "copies": 1,
        "messages": 1,
        "pending_copies": 0,
        "webhooks": 2,  # the delivered and open notices, never sent
    }
    assert await store.list_events(recipient=BOB) == []
    message = await store.get_message(spooled.message_id)
    assert message is not None and message.rcpt_tos == (CAROL,)
    await opened(client, codec, bob, ua=THUNDERBIRD)  # after erasure: "someone"
    assert (await last(store)).recipient is None
    assert BOB not in str(await store.message_report(spooled.message_id))
    assert (await admin.delete("/api/contacts/nobody")).status == 400


async def test_raw_download_only_for_logged_messages(store: Store, serve: Any) -> None:
    admin = await serve(create_admin_app(Config(), store))
    ids = []
    for logged in (True, False):
        decision = TrackingDecision(opens=True, clicks=True, log_copy=logged)
        raw = f"Subject: {logged}\r\n\r\nbody\r\n".encode()
        ids.append((await spool(store, (BOB,), raw=raw, decision=decision)).message_id)
    resp = await admin.get(f"/api/messages/{ids[0]}/raw")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "message/rfc822"
    assert await resp.read() == b"Subject: True\r\n\r\nbody\r\n"
    assert (await admin.get(f"/api/messages/{ids[1]}/raw")).status == 404
    assert (await admin.get("/api/messages/zz/raw")).status == 404


async def test_the_writer_process_hands_back_the_events_as_stored(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    """Acks carry ids only when nothing changed: the live feed still gets whole events."""
    assert isinstance(store, SQLiteStore)
    http_store = open_store(StoreConfig(path=store.path), events_process=True)
    await http_store.open()
    recorded: list[Event] = []
    client = await serve(create_tracking_app(tracking(), http_store, codec, recorded.extend))
    try:
        assert isinstance(http_store, SQLiteStore) and http_store.events_pid is not None
        bob = spooled.copies[BOB].id
        await opened(client, codec, bob, ua=THUNDERBIRD)  # stored as sent: its id comes back
        await clicked(client, codec, spooled.copies[CAROL].id, ua=FIREFOX)  # + an inferred open
        await opened(client, codec, bob, ua=GOOGLEBOT)
    finally:
        await http_store.close()
    assert [(e.kind, e.inferred) for e in recorded] == [
        ("open", False),
        ("click", False),
        ("open", True),
        ("open", False),
    ]
    assert sorted(recorded, key=lambda e: e.id or 0) == await store.list_events()
