"""GET /api/events, /api/contacts/{address}, /api/export.csv over a real socket and store."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.models import Event
from relay.core.store import Store
from tracking_http.admin.events_api import csv_cell
from tracking_http.app import create_admin_app

TOKEN = "events-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOB, CAROL = "bob@example.net", "carol@example.org"


def admin_config() -> Config:
    return Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))


async def record(store: Store, *events: Event) -> list[int]:
    """Concurrently, so they are group-committed (ids still follow the order given)."""
    return list(await asyncio.gather(*(store.record_event(e) for e in events)))


async def test_events_filters_and_cursor(store: Store, spooled: Any, serve: Any) -> None:
    ids = await record(
        store,
        spooled.event(BOB),
        spooled.event(BOB, "click", url="https://example.com/a?x=1&y=2", link_index=0),
        spooled.event(CAROL, klass="proxy", reasons=("apple_mpp",)),
    )
    client = await serve(create_admin_app(admin_config(), store))
    body = await (await client.get("/api/events", headers=AUTH)).json()
    assert [e["id"] for e in body["events"]] == ids and body["next"] is None
    click = body["events"][1]
    assert click["type"] == "click" and click["url"] == "https://example.com/a?x=1&y=2"
    assert click["recipient"] == BOB and click["message_id"] == spooled.message_id
    assert click["at"].endswith("Z") and click["class"] == "human"
    assert click["ip"] == "198.51.100.7" and "Thunderbird" in click["user_agent"]
    proxy = body["events"][2]
    assert proxy["class"] == "proxy" and proxy["reasons"] == ["apple_mpp"]
    assert proxy["is_machine"] is True and proxy["inferred"] is False

    page = await (await client.get("/api/events?limit=2", headers=AUTH)).json()
    assert [e["id"] for e in page["events"]] == ids[:2] and page["next"] == ids[1]
    rest = await (await client.get(f"/api/events?since={page['next']}", headers=AUTH)).json()
    assert [e["id"] for e in rest["events"]] == ids[2:]
    clicks = await (await client.get("/api/events?type=click", headers=AUTH)).json()
    assert [e["id"] for e in clicks["events"]] == [ids[1]]
    carol = await (await client.get(f"/api/events?recipient={CAROL}", headers=AUTH)).json()
    assert [e["id"] for e in carol["events"]] == [ids[2]]


async def test_bad_parameters_get_400_json(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    for query in (
        "/api/events?since=-1",
        "/api/events?since=abc",
        "/api/events?since=" + "9" * 40,
        "/api/events?type=bounce",
        "/api/events?limit=0",
        "/api/events?limit=1001",
        "/api/events?recipient=" + "a" * 400,
        "/api/export.csv?type=nope",
        "/api/events/stream?last_event_id=x",
        "/api/contacts/not-an-address",
    ):
        resp = await client.get(query, headers=AUTH)
        assert resp.status == 400, query
        assert "error" in await resp.json()
    for path in ("/api/events", "/api/export.csv", "/api/contacts/a@b.c", "/api/openapi.json"):
        assert (await client.get(path)).status == 401, path
    stream = await client.get("/api/events/stream", headers={"Authorization": "Bearer nope"})
    assert stream.status == 401


async def test_contact_record(store: Store, spooled: Any, serve: Any) -> None:
    now = time.time()
    await record(
        store,
        spooled.event(BOB, at=now - 30),
        spooled.event(BOB, at=now - 20, klass="bot"),
        spooled.event(BOB, "click", at=now - 10, url="https://example.com/", link_index=0),
        spooled.event(CAROL, at=now - 5),
    )
    client = await serve(create_admin_app(admin_config(), store))
    body = await (await client.get(f"/api/contacts/{BOB}", headers=AUTH)).json()
    assert body["address"] == BOB
    assert body["last_open"] is not None and body["last_click"] is not None
    assert body["last_reply"] is None
    assert body["counts"]["open"] == {"human": 1, "bot": 1}
    assert body["counts"]["click"] == {"human": 1}
    assert [m["id"] for m in body["messages"]] == [spooled.message_id]
    assert body["messages"][0]["subject"] == "Offer" and body["messages"][0]["state"] == "queued"
    assert [e["type"] for e in body["timeline"]] == ["click", "open", "open"]
    assert all(e["recipient"] == BOB for e in body["timeline"])
    missing = await client.get("/api/contacts/nobody@example.com", headers=AUTH)
    assert missing.status == 404


def test_csv_cells_that_start_a_formula_are_quoted() -> None:
    for dangerous in ("=HYPERLINK(1)", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(dangerous) == "'" + dangerous
    assert csv_cell("Mozilla/5.0") == "Mozilla/5.0"
    assert csv_cell(None) == ""
    assert csv_cell(12) == "12"


async def test_export_csv_pages_through_every_event(store: Store, spooled: Any, serve: Any) -> None:
    hostile = "=cmd|' /C calc'!A0"
    total = 2500  # more than two export pages
    batch = [spooled.event(BOB, user_agent=f"agent {i}") for i in range(total - 1)]
    await record(store, *batch, spooled.event(CAROL, user_agent=hostile))
    client = await serve(create_admin_app(admin_config(), store))
    resp = await client.get("/api/export.csv", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0][:3] == ["id", "type", "at"]
    assert len(rows) == total + 1
    ids = [int(r[0]) for r in rows[1:]]
    assert ids == sorted(ids) and len(set(ids)) == total
    assert rows[-1][4] == CAROL and rows[-1][-1] == "'" + hostile
    only_carol = await client.get(f"/api/export.csv?recipient={CAROL}", headers=AUTH)
    assert len(list(csv.reader(io.StringIO(await only_carol.text())))) == 2
