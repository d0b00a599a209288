"""Search, tags, rates and mail clients in the admin API (SPEC 8), over a real socket."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from support.messages import BOB, CAROL, spool

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.models import DeliveryOutcome, Event
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.app import create_admin_app, create_tracking_app

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAVE = "dave@example.com"
DAY = 86400.0
OUTLOOK = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)"
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
DELIVERED = DeliveryOutcome("delivered", "250 2.0.0 ok")


def admin_app(store: Store) -> Any:
    config = Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))
    return create_admin_app(config, store)


async def delivered(
    store: Store, subject: str, at: float, tags: tuple[str, ...], rcpts: tuple[str, ...]
) -> tuple[str, dict[str, int]]:
    """A tagged message, delivered to every recipient: its id and copy ids by recipient."""
    # Submitted from elsewhere than the test client's address, so its opens are not "self".
    spooled = await spool(
        store, rcpts, subject=subject, received_at=at, tags=tags, client_addr="192.0.2.200"
    )
    for copy_id in spooled.ids.values():
        await store.record_outcome(copy_id, DELIVERED, None)
    return spooled.message_id, spooled.ids


async def test_search_tags_rates_and_clients(store: Store, codec: TokenCodec, serve: Any) -> None:
    now = time.time()
    old, _ = await delivered(store, "Old news", now - 40 * DAY, ("launch",), (DAVE,))
    mid, copies = await delivered(
        store, "Spring launch", now - 60, ("Launch", "spring"), (BOB, CAROL)
    )
    tracking = await serve(create_tracking_app(Config(), store, codec))
    for recipient, agent in ((BOB, OUTLOOK), (BOB, IPHONE_MAIL), (CAROL, GMAIL_PROXY)):
        pixel = f"/o/{codec.open_token(copies[recipient])}.gif"
        assert (await tracking.get(pixel, headers={"User-Agent": agent})).status == 200
    click = Event("click", copies[BOB], mid, BOB, now, "192.0.2.1", OUTLOOK, url="https://a/")
    await store.record_event(click)
    client = await serve(admin_app(store))

    async def get(path: str, status: int = 200) -> Any:
        resp = await client.get(path, headers=AUTH)
        assert resp.status == status, (path, await resp.text())
        return await resp.json()

    listing = await get("/api/messages")
    summary = next(m for m in listing["messages"] if m["id"] == mid)
    assert summary["tags"] == ["Launch", "spring"]
    assert summary["opens"]["rate"] == 0.5 and summary["clicks"]["rate"] == 0.5
    assert (await get(f"/api/messages/{mid}"))["tags"] == ["Launch", "spring"]

    def ids(body: Any) -> list[str]:
        return [m["id"] for m in body["messages"]]

    assert ids(await get("/api/messages?tag=LAUNCH")) == [mid, old]
    assert ids(await get("/api/messages?q=spring")) == [mid]
    assert ids(await get(f"/api/messages?q={DAVE}")) == [old]
    assert ids(await get(f"/api/messages?recipient={BOB}")) == [mid]
    assert ids(await get("/api/messages?state=delivered&since=" + str(int(now - DAY)))) == [mid]
    assert ids(await get("/api/messages?tag=launch&until=2000-01-01")) == []
    page = await get("/api/messages?tag=launch&limit=1")
    assert ids(page) == [mid] and page["next"] == mid
    assert ids(await get(f"/api/messages?tag=launch&limit=1&cursor={mid}")) == [old]

    tags = await get("/api/tags")
    assert [(t["tag"], t["messages"]) for t in tags["tags"]] == [("Launch", 2), ("spring", 1)]
    report = await get("/api/tags/launch?since=" + str(int(now - 30 * DAY)))
    assert report["messages"] == 1 and report["recipients"] == 2 and report["delivered"] == 2
    assert report["opens"] == {"unique_human": 1, "rate": 0.5, "unique_maybe": 1, "proxy_rate": 0.5}
    assert report["clicks"] == {"unique_human": 1, "rate": 0.5, "click_to_open": 1.0}
    assert report["links"] == [{"url": "https://a/", "unique_human": 1}]
    assert (await get("/api/tags/launch"))["messages"] == 2

    resp = await client.get("/api/tags/launch?format=csv", headers=AUTH)
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0][:3] == ["tag", "url", "unique_human_clicks"]
    assert rows[1][:3] == ["Launch", "https://a/", "1"]
    assert rows[2][:4] == ["Launch", "", "1", "2"]  # the totals row: 2 messages

    readers = await get(f"/api/messages/{mid}/clients")
    assert sorted(
        (c["client"], c["platform"], c["human"], c["proxy"]) for c in readers["clients"]
    ) == [
        ("Apple Mail", "mobile", 1, 0),
        ("Gmail", "webmail", 0, 1),
        ("Outlook", "desktop", 1, 0),
    ]
    platforms = {p["platform"]: (p["human"], p["proxy"]) for p in readers["platforms"]}
    assert platforms == {"mobile": (1, 0), "desktop": (1, 0), "webmail": (0, 1)}
    assert (await get("/api/tags/Launch/clients"))["clients"] == readers["clients"]


async def test_bad_search_and_tag_parameters(store: Store, serve: Any) -> None:
    client = await serve(admin_app(store))
    for query in (
        "state=lost",
        "since=yesterday",
        "until=2026-13-01",
        "recipient=nobody",
        "tag=",
        "tag=" + "x" * 101,
        "q=" + "w" * 201,
    ):
        resp = await client.get(f"/api/messages?{query}", headers=AUTH)
        assert resp.status == 400, query
        assert "error" in await resp.json()
    for path in (
        "/api/tags/x?since=soon",
        "/api/tags/x?format=xml",
        "/api/tags/x/clients?until=1x",
    ):
        assert (await client.get(path, headers=AUTH)).status == 400, path
    assert (await client.get("/api/tags/nothing", headers=AUTH)).status == 404
    assert (await client.get("/api/messages/abc123/clients", headers=AUTH)).status == 404
    assert (await client.get("/api/tags", headers=AUTH)).status == 200
    assert (await client.get("/api/tags")).status == 401
