"""Possibly forwarded copies, unique clicks per link and a contact's last reply (SPEC 7, 8).

Hits go over real sockets to the tracking app and are classified and stored
in a real SQLite store; the admin app (another real server on the same
store) is asked what it makes of them.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest

from relay.core.config import AdminConfig, Config, HostPort, TrackingConfig
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.admin.api import iso_time
from tracking_http.admin.pages import when
from tracking_http.app import create_admin_app, create_tracking_app
from tracking_http.clients import ua_family

TOKEN = "forwarded-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOB, CAROL = "bob@example.net", "carol@example.org"
URL, URL2 = "https://shop.example.com/a", "https://shop.example.com/b"
OUTLOOK = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E;"
    " Microsoft Outlook 16.0.17029; ms-office; MSOffice 16)"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148"
)
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3.1"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/124.0.0.0 Safari/537.36"
)
EDGE = CHROME + " Edg/124.0.2478.51"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.4 Safari/605.1.15"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
OFFICE, HOME = "198.51.100.20", "192.0.2.30"  # two networks
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.mark.parametrize(
    ("agent", "family"),
    [
        (OUTLOOK, "Outlook"),
        (IPHONE_MAIL, "AppleMail"),
        (THUNDERBIRD, "Thunderbird"),
        (FIREFOX, "Firefox"),
        (CHROME, "Chrome"),
        (EDGE, "Edge"),
        (SAFARI, "Safari"),
        ("Mozilla/5.0 (Linux; Android 14) GmailExtension/1.0", "Gmail"),
        ("", "other"),
        ("curl/8.5.0", "other"),
    ],
)
def test_user_agent_family(agent: str, family: str) -> None:
    assert ua_family(agent) == family


async def servers(serve: Any, store: Store, codec: TokenCodec, **changes: Any) -> tuple[Any, Any]:
    """The tracking app (behind a loopback proxy, so X-Forwarded-For names the client)
    and the admin app, on one store."""
    config = Config(
        tracking=TrackingConfig(trusted_proxies=LOOPBACK, **changes),
        admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN),
    )
    tracker = await serve(create_tracking_app(config, store, codec))
    return tracker, await serve(create_admin_app(config, store))


async def opened(client: Any, codec: TokenCodec, copy_id: int, ua: str, ip: str) -> None:
    headers = {"User-Agent": ua, "X-Forwarded-For": ip}
    resp = await client.get(f"/o/{codec.open_token(copy_id)}.gif", headers=headers)
    assert resp.status == 200


async def clicked(
    client: Any, codec: TokenCodec, copy_id: int, index: int, ua: str = FIREFOX
) -> None:
    token = codec.click_token(copy_id, index, URL2 if index == 1 else URL)
    headers = {"User-Agent": ua, "X-Forwarded-For": OFFICE}
    resp = await client.get(f"/c/{token}", headers=headers, allow_redirects=False)
    assert resp.status == 302


async def detail(admin: Any, message_id: str) -> dict[str, Any]:
    resp = await admin.get(f"/api/messages/{message_id}", headers=AUTH)
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    return body


def forwarded(body: dict[str, Any]) -> dict[str, bool]:
    return {r["address"]: r["possibly_forwarded"] for r in body["recipients"]}


async def test_two_different_clients_flag_a_copy_and_one_client_does_not(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    tracker, admin = await servers(serve, store, codec)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await opened(tracker, codec, bob, OUTLOOK, OFFICE)  # Outlook desktop at the office
    await opened(tracker, codec, bob, IPHONE_MAIL, HOME)  # iPhone Mail at home
    await opened(tracker, codec, carol, THUNDERBIRD, OFFICE)
    await opened(tracker, codec, carol, THUNDERBIRD, "198.51.100.21")  # same /24: same client
    body = await detail(admin, spooled.message_id)
    assert forwarded(body) == {BOB: True, CAROL: False}
    assert body["someone"]["possibly_forwarded"] is False
    events = await store.list_events()
    assert events[0].extra == {"ua_family": "Outlook", "network": "198.51.100.0"}
    assert events[1].extra == {"ua_family": "AppleMail", "network": "192.0.2.0"}
    page = await (await admin.get(f"/messages/{spooled.message_id}", headers=AUTH)).text()
    assert page.count("possibly forwarded or shared</span>") == 1
    cards = page[page.index("<h2>Recipients</h2>") :]  # the header lists above name them too
    assert cards.index(BOB) < cards.index("possibly forwarded") < cards.index(CAROL)


async def test_only_clearly_different_human_clients_count(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    tracker, admin = await servers(serve, store, codec)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    # Bob: one client family on two networks (home and office), then a proxy and a bot
    # on other networks: none of them is a second person.
    await opened(tracker, codec, bob, OUTLOOK, OFFICE)
    await opened(tracker, codec, bob, OUTLOOK, HOME)
    await opened(tracker, codec, bob, GMAIL_PROXY, "203.0.113.5")
    await opened(tracker, codec, bob, GOOGLEBOT, "203.0.113.6")
    # Carol: two families on one network (phone and desktop on the office line).
    await opened(tracker, codec, carol, THUNDERBIRD, OFFICE)
    await opened(tracker, codec, carol, IPHONE_MAIL, "198.51.100.77")
    assert forwarded(await detail(admin, spooled.message_id)) == {BOB: False, CAROL: False}
    # A second family on a second network makes it two clients.
    await opened(tracker, codec, carol, CHROME, HOME)
    assert forwarded(await detail(admin, spooled.message_id)) == {BOB: False, CAROL: True}


async def test_inferred_opens_and_ignored_networks_do_not_flag(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    ignored = (ipaddress.ip_network("192.0.2.0/24"),)
    tracker, admin = await servers(serve, store, codec, ignore_networks=ignored)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await clicked(tracker, codec, bob, 0, ua=CHROME)  # infers an open, which has no client
    await opened(tracker, codec, bob, OUTLOOK, "203.0.113.5")
    await opened(tracker, codec, carol, OUTLOOK, OFFICE)
    await opened(tracker, codec, carol, IPHONE_MAIL, HOME)  # an ignored network: self
    assert forwarded(await detail(admin, spooled.message_id)) == {BOB: False, CAROL: False}


async def test_unique_human_clicks_per_link(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    tracker, admin = await servers(serve, store, codec)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await clicked(tracker, codec, bob, 0)
    await clicked(tracker, codec, bob, 0)  # the same person again: not another recipient
    await clicked(tracker, codec, carol, 0)
    await clicked(tracker, codec, carol, 1, ua=GOOGLEBOT)
    body = await detail(admin, spooled.message_id)
    first, second = body["links"]
    assert first == {
        "url": URL,
        "clicks": {"human": 3, "unique_human": 2, "bot": 0, "prefetch": 0, "self": 0},
    }
    assert second["url"] == URL2
    assert second["clicks"] == {"human": 0, "unique_human": 0, "bot": 1, "prefetch": 0, "self": 0}
    by_address = {r["address"]: r for r in body["recipients"]}
    bob_link = by_address[BOB]["links"][0]["clicks"]
    assert (bob_link["human"], bob_link["unique_human"]) == (2, 1)
    page = await (await admin.get(f"/messages/{spooled.message_id}", headers=AUTH)).text()
    assert 'class="message-links"' in page
    assert '<td class="num">3</td><td class="num">2</td>' in page


async def test_contact_last_reply_from_reply_events(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    _tracker, admin = await servers(serve, store, codec)
    at = time.time() - 60
    stored = await store.record_replies(["<offer-1@example.com>"], [BOB], at)
    assert [e.kind for e in stored] == ["reply", "open"]  # and an inferred open
    bob = await (await admin.get(f"/api/contacts/{BOB}", headers=AUTH)).json()
    assert bob["last_reply"] == iso_time(at) and bob["last_open"] == iso_time(at)
    assert bob["counts"]["reply"] == {"human": 1}
    carol = await (await admin.get(f"/api/contacts/{CAROL}", headers=AUTH)).json()
    assert carol["last_reply"] is None
    page = await (await admin.get(f"/contacts/{BOB}", headers=AUTH)).text()
    assert f"<dt>Last reply</dt><dd>{when(at)}</dd>" in page
    carol_page = await (await admin.get(f"/contacts/{CAROL}", headers=AUTH)).text()
    assert "<dt>Last reply</dt><dd>—</dd>" in carol_page
