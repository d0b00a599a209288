"""Real-traffic patterns through the real tracking server: time-of-click checks, bursts
per client, MPP, link cards, sandboxes, and network data replaced while it runs."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import pytest

from relay.core.config import Config, TrackingConfig
from relay.core.models import Event
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.app import RELOAD_NETWORKS, create_tracking_app

BOB, CAROL = "bob@example.net", "carol@example.org"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
APPLE_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
PREVIEW = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/51.0.2704.79 Safari/537.36 Edge/14.14393 MicrosoftPreview/2.0 "
    "+https://aka.ms/MicrosoftPreview"
)
EOP_IP = "40.107.22.15"  # Exchange Online Protection (shipped scanner_networks.txt)
RELAY_IP = "172.224.226.17"  # iCloud Private Relay egress (shipped apple_private_relay.txt)
READER_IP = "198.51.100.20"
URLS = ("https://shop.example.com/a", "https://shop.example.com/b", "https://shop.example.com/c")
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


async def start(serve: Any, store: Store, codec: TokenCodec, **changes: Any) -> Any:
    config = Config(tracking=TrackingConfig(trusted_proxies=LOOPBACK, **changes))
    return await serve(create_tracking_app(config, store, codec))


async def click(client: Any, codec: TokenCodec, copy_id: int, index: int, ua: str, ip: str) -> None:
    token = codec.click_token(copy_id, index, URLS[index])
    headers = {"User-Agent": ua, "X-Forwarded-For": ip}
    resp = await client.get(f"/c/{token}", headers=headers, allow_redirects=False)
    assert resp.status == 302


async def pixel(client: Any, codec: TokenCodec, copy_id: int, ua: str, ip: str) -> None:
    headers = {"User-Agent": ua, "X-Forwarded-For": ip}
    resp = await client.get(f"/o/{codec.open_token(copy_id)}.gif", headers=headers)
    assert resp.status == 200


async def labels(store: Store) -> list[tuple[str, str, str]]:
    """(kind, class, first reason) of every recorded, not inferred, event."""
    events: list[Event] = await store.list_events()
    return [(e.kind, e.klass, e.reasons[0] if e.reasons else "") for e in events if not e.inferred]


async def test_reader_after_a_time_of_click_check_stays_human(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    """Safe Links fetches links from Microsoft's network; the reader clicks another link a
    second later from home: the scanner is a bot, the reader is not part of its burst."""
    client = await start(serve, store, codec, bot_click_window=0.0)
    bob = spooled.copies[BOB].id
    await click(client, codec, bob, 0, CHROME, EOP_IP)
    await click(client, codec, bob, 1, CHROME, "40.107.22.16")
    await click(client, codec, bob, 2, CHROME, READER_IP)
    await click(client, codec, bob, 0, CHROME, READER_IP)  # the same link the scanner fetched
    assert await labels(store) == [
        ("click", "bot", "net:scanner:microsoft"),
        ("click", "bot", "net:scanner:microsoft"),
        ("click", "human", ""),
        ("click", "bot", "click:burst"),  # the reader's own second link within 2 s
    ]


async def test_a_burst_is_one_clients_neighbouring_addresses_and_agent(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    client = await start(serve, store, codec, bot_click_window=0.0)
    bob, carol = spooled.copies[BOB].id, spooled.copies[CAROL].id
    await click(client, codec, bob, 0, FIREFOX, "203.0.113.5")
    await click(client, codec, bob, 1, FIREFOX, "203.0.113.99")  # same /24, same family
    await click(client, codec, carol, 0, FIREFOX, "203.0.113.5")
    await click(client, codec, carol, 1, CHROME, "203.0.113.5")  # same address, other agent
    await click(client, codec, carol, 2, FIREFOX, "2001:db8:1:2::1")
    await click(client, codec, carol, 1, FIREFOX, "2001:db8:1:2:ffff::9")  # same /64
    assert [k for _kind, k, _r in await labels(store)] == [
        "human",
        "bot",
        "human",
        "human",
        "human",
        "bot",
    ]


async def test_mpp_at_delivery_then_the_reader_hours_later(
    store: Store, codec: TokenCodec, delivered_bob: int, serve: Any
) -> None:
    client = await start(serve, store, codec)
    bob = delivered_bob
    await pixel(client, codec, bob, "Mozilla/5.0", RELAY_IP)
    await pixel(client, codec, bob, APPLE_MAIL, "2001:db8:77::5")
    await pixel(client, codec, bob, CHROME, "203.0.113.50")  # a browser at once: a sandbox
    await click(client, codec, bob, 0, PREVIEW, "52.96.10.10")  # Outlook's link card
    assert await labels(store) == [
        ("open", "proxy", "net:apple-mpp"),
        ("open", "human", "ua:mail-client:AppleMail"),
        ("open", "bot", "open:too-fast"),
        ("click", "prefetch", "ua:link-preview:Microsoft"),
    ]


async def test_new_network_data_is_used_without_a_restart(
    store: Store,
    codec: TokenCodec,
    spooled: Any,
    serve: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = await start(serve, store, codec, data_dir=str(tmp_path))
    reload = client.server.app[RELOAD_NETWORKS]
    bob = spooled.copies[BOB].id
    await pixel(client, codec, bob, "Mozilla/5.0", "192.0.2.9")
    assert not await reload()  # nothing changed: nothing read
    (tmp_path / "apple_private_relay.txt").write_text("apple 192.0.2.0/24\n", encoding="utf-8")
    assert await reload()
    await pixel(client, codec, bob, "Mozilla/5.0", "192.0.2.9")
    (tmp_path / "apple_private_relay.txt").write_text("apple 192.0.2.300/24\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="tracking_http.labelling"):
        assert not await reload()
    assert "apple_private_relay.txt:1" in caplog.text
    await pixel(client, codec, bob, "Mozilla/5.0", "192.0.2.9")  # the old data still in use
    assert await labels(store) == [
        ("open", "proxy", "ua:bare-mozilla"),
        ("open", "proxy", "net:apple-mpp"),
        ("open", "proxy", "net:apple-mpp"),
    ]
