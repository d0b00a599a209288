"""The public tracking server over a real socket, with the real store and tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import random
import re
import sqlite3
import string
import time
from pathlib import Path
from typing import Any

from relay.core.config import Config, PrivacyConfig, TrackingConfig
from relay.core.models import Event
from relay.core.store import Store
from relay.core.tokens import MAX_TOKEN_CHARS, TokenCodec
from tracking_http.app import create_tracking_app
from tracking_http.headers import SECURITY_HEADERS
from tracking_http.public import TRANSPARENT_GIF

BOB = "bob@example.net"
URL = "https://shop.example.com/p?id=42&ref=mail&x=a%20b#top"
UNICODE_URL = "https://例え.jp/ünïcode/päth?q=größe&lang=de"
CONTROL_URL = "https://example.com/a\r\nSet-Cookie: x=1"  # must not split the response


async def events(store: Store) -> list[Event]:
    return await store.list_events()


def tampered(token: str) -> str:
    """Flip one character in the middle: still token-shaped, no longer genuine."""
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def test_pixel_returns_gif_and_records_one_event(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    copy = spooled.copies[BOB]
    resp = await client.get(f"/o/{codec.open_token(copy.id)}.gif", headers={"User-Agent": "UA/1"})
    assert resp.status == 200
    assert await resp.read() == TRANSPARENT_GIF
    assert len(TRANSPARENT_GIF) == 43
    assert resp.headers["Content-Type"] == "image/gif"
    assert resp.headers["Cache-Control"] == "no-store, no-cache, must-revalidate, private"
    assert resp.headers["Pragma"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    [event] = await events(store)
    assert (event.kind, event.copy_id, event.message_id) == ("open", copy.id, spooled.message_id)
    assert (event.recipient, event.ip, event.user_agent) == (BOB, "127.0.0.1", "UA/1")
    assert event.klass == "human"


async def test_head_is_answered_and_never_counted(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    copy = spooled.copies[BOB]
    pixel = await client.head(f"/o/{codec.open_token(copy.id)}.gif")
    assert pixel.status == 200
    assert pixel.headers["Content-Type"] == "image/gif"
    click = await client.head(f"/c/{codec.click_token(copy.id, 0, URL)}", allow_redirects=False)
    assert click.status == 302
    assert click.headers["Location"] == URL
    assert await events(store) == []


async def test_bad_pixel_token_gets_gif_and_records_nothing(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    good = codec.open_token(spooled.copies[BOB].id)
    for token in (tampered(good), "garbage", "x" * 8100, good[:-3]):
        resp = await client.get(f"/o/{token}.gif")
        assert resp.status == 200
        assert await resp.read() == TRANSPARENT_GIF
    assert await events(store) == []


async def test_click_redirects_to_exact_url(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    copy = spooled.copies[BOB]
    resp = await client.get(f"/c/{codec.click_token(copy.id, 3, URL)}", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == URL
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    resp = await client.get(
        f"/c/{codec.click_token(copy.id, 4, UNICODE_URL)}", allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"] == UNICODE_URL
    resp = await client.get(
        f"/c/{codec.click_token(copy.id, 5, CONTROL_URL)}", allow_redirects=False
    )
    assert resp.status == 302
    assert resp.headers["Location"] == "https://example.com/a%0D%0ASet-Cookie: x=1"
    assert "Set-Cookie" not in resp.headers
    clicks = await events(store)
    assert [(e.kind, e.url, e.link_index, e.recipient) for e in clicks] == [
        ("click", URL, 3, BOB),
        ("click", UNICODE_URL, 4, BOB),
        ("click", CONTROL_URL, 5, BOB),
    ]


async def test_tampered_click_is_404_without_location(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    good = codec.click_token(spooled.copies[BOB].id, 0, URL)
    open_token = codec.open_token(spooled.copies[BOB].id)
    for token in (tampered(good), good[:-1], "nope", open_token, "y" * 8100):
        resp = await client.get(f"/c/{token}", allow_redirects=False)
        assert resp.status == 404, token
        assert "Location" not in resp.headers
        assert "text/html" in resp.headers["Content-Type"]
    assert await events(store) == []


async def test_click_redirects_when_store_is_closed(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    token = codec.click_token(spooled.copies[BOB].id, 0, URL)
    await store.close()
    resp = await client.get(f"/c/{token}", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == URL
    pixel = await client.get(f"/o/{codec.open_token(spooled.copies[BOB].id)}.gif")
    assert await pixel.read() == TRANSPARENT_GIF


async def test_unknown_copy_still_answers_and_records_nothing(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    resp = await client.get(f"/c/{codec.click_token(987654, 0, URL)}", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers["Location"] == URL
    resp = await client.get(f"/o/{codec.open_token(987654)}.gif")
    assert await resp.read() == TRANSPARENT_GIF
    assert await events(store) == []


async def test_forwarded_for_only_from_trusted_proxies(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    trusted = Config(
        tracking=TrackingConfig(trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    )
    spoof = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    token = codec.open_token(spooled.copies[BOB].id)
    untrusting = await serve(create_tracking_app(Config(), store, codec))
    await untrusting.get(f"/o/{token}.gif", headers=spoof)
    behind_proxy = await serve(create_tracking_app(trusted, store, codec))
    await behind_proxy.get(f"/o/{token}.gif", headers=spoof)
    await behind_proxy.get(f"/o/{token}.gif", headers={"X-Forwarded-For": "bogus"})
    assert [e.ip for e in await events(store)] == ["127.0.0.1", "198.51.100.7", "127.0.0.1"]


async def test_self_network_and_anonymized_ip(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    config = Config(
        tracking=TrackingConfig(
            trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
            ignore_networks=(ipaddress.ip_network("192.0.2.0/24"),),
            privacy=PrivacyConfig(anonymize_ip=True),
        )
    )
    client = await serve(create_tracking_app(config, store, codec))
    token = codec.open_token(spooled.copies[BOB].id)
    await client.get(f"/o/{token}.gif", headers={"X-Forwarded-For": "192.0.2.55"})
    await client.get(
        f"/o/{token}.gif", headers={"X-Forwarded-For": "198.51.100.77", "User-Agent": "x" * 2000}
    )
    office, outside = await events(store)
    assert (office.klass, office.ip) == ("self", "192.0.2.0")
    assert (outside.klass, outside.ip) == ("human", "198.51.100.0")
    assert outside.user_agent == "x" * 512


async def test_healthz_follows_the_store(store: Store, codec: TokenCodec, serve: Any) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    resp = await client.get("/healthz")
    assert (resp.status, await resp.text()) == (200, "ok")
    await store.close()
    resp = await client.get("/healthz")
    assert resp.status == 503


async def test_unknown_path_and_body_limits(store: Store, codec: TokenCodec, serve: Any) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    resp = await client.get("/nothing-here")
    assert resp.status == 404
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    resp = await client.get("/healthz", headers={"X-Junk": "j" * 20_000})
    assert resp.status in (400, 431)


async def test_longest_tokens_work_and_longer_are_refused(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await serve(create_tracking_app(Config(), store, codec))
    copy = spooled.copies[BOB]
    rng = random.Random(7)
    path = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(7800))
    long_url = f"https://example.com/{path}?a=1&b=2"
    token = codec.click_token(copy.id, 1, long_url)
    assert len(token) > 7800  # close to MAX_TOKEN_CHARS
    resp = await client.get(f"/c/{token}", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, long_url)
    over = "y" * (MAX_TOKEN_CHARS + 100)
    resp = await client.get(f"/c/{over}", allow_redirects=False)
    assert resp.status == 404
    assert "Location" not in resp.headers
    resp = await client.get(f"/o/{over}.gif")
    assert await resp.read() == TRANSPARENT_GIF
    resp = await client.get(f"/c/{'z' * 20_000}", allow_redirects=False)
    assert resp.status in (400, 414)  # refused by the HTTP parser before any handler
    assert [e.url for e in await events(store)] == [long_url]


async def test_slow_store_costs_time_bound_not_the_click(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any, tmp_path: Path
) -> None:
    """A real fault: another process holds the SQLite write lock, so the store is slow."""
    client = await serve(create_tracking_app(Config(), store, codec))
    token = codec.click_token(spooled.copies[BOB].id, 0, URL)
    locker = sqlite3.connect(tmp_path / "relay.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        resp = await client.get(f"/c/{token}", allow_redirects=False)
        elapsed = time.monotonic() - started
        assert (resp.status, resp.headers["Location"]) == (302, URL)
        assert 0.8 < elapsed < 3.0  # waited for the store, but only for the bound
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    for _ in range(50):  # the shielded write lands once the lock is gone
        if await events(store):
            break
        await asyncio.sleep(0.1)
    assert [e.url for e in await events(store)] == [URL]


async def test_every_public_answer_carries_the_security_headers(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    """Prebuilt answers and the hook's own (router 404, 405, health) alike."""
    client = await serve(create_tracking_app(Config(), store, codec))
    copy = spooled.copies[BOB]
    answers = [
        await client.get(f"/o/{codec.open_token(copy.id)}.gif"),
        await client.head(f"/o/{codec.open_token(copy.id)}.gif"),
        await client.get("/o/garbage.gif"),
        await client.get(f"/c/{codec.click_token(copy.id, 0, URL)}", allow_redirects=False),
        await client.get("/c/garbage", allow_redirects=False),
        await client.get("/healthz"),
        await client.get("/nothing-here"),
        await client.post("/healthz"),
    ]
    assert [a.status for a in answers] == [200, 200, 200, 302, 404, 200, 404, 405]
    not_found = answers[4]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            if answer is not not_found or name != "Content-Security-Policy":
                assert answer.headers[name] == value, (answer.url, name)
        assert answer.headers["Server"] == "relay"
    assert not_found.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Link not found" in await not_found.text()


async def test_a_broken_link_gets_a_styled_page_and_nothing_else(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    """Its one inline style is allowed by hash; no script, image, remote load or redirect."""
    client = await serve(create_tracking_app(Config(), store, codec))
    good = codec.click_token(spooled.copies[BOB].id, 0, URL)
    resp = await client.get(f"/c/{good[:-3]}", allow_redirects=False)
    assert resp.status == 404 and "Location" not in resp.headers
    page = await resp.text()
    assert "This link is broken" in page and '<meta name="viewport"' in page
    csp = resp.headers["Content-Security-Policy"]
    style = re.search(r"<style>(.*)</style>", page)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert csp == (
        f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    )
    assert "<script" not in page and "<img" not in page and "http" not in page.lower()
    assert await events(store) == []
