"""GET /api/events/stream: pushed events, events from another process, resumption, limits."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse

from relay.core.config import AdminConfig, Config, HostPort, StoreConfig
from relay.core.metrics import Metrics
from relay.core.models import DeliveryOutcome, Event
from relay.core.store import Store, open_store
from relay.core.tokens import TokenCodec
from tracking_http.app import FOLLOWER, LIVE_FEED, create_admin_app, create_tracking_app
from tracking_http.notify import Checkpoint, EventBroker, StoreFollower, recorded_sink

TOKEN = "live-feed-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOB = "bob@example.net"
GUARD = 20.0  # seconds before a hung test fails instead of hanging; not a measurement


def config() -> Config:
    return Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))


async def next_message(resp: ClientResponse) -> dict[str, str]:
    """The next SSE block as {field: value}; comments under ":"."""
    block: dict[str, str] = {}
    async with asyncio.timeout(GUARD):
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if not line:
                if block:
                    return block
                continue
            name, _, value = line.partition(":")
            block[name] = value.strip()


async def next_event(resp: ClientResponse) -> dict[str, str]:
    while "data" not in (block := await next_message(resp)):
        pass
    return block


async def test_a_pixel_hit_is_pushed_at_once(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    await store.record_outcome(spooled.copies[BOB].id, DeliveryOutcome("delivered", "250"), None)
    broker, metrics = EventBroker(), Metrics()
    admin_app = create_admin_app(config(), store, metrics, broker)
    admin_app[FOLLOWER].interval = 3600  # only the push can deliver it in this test
    admin = await serve(admin_app)
    tracking = await serve(
        create_tracking_app(config(), store, codec, recorded_sink(broker, metrics))
    )
    resp = await admin.get("/api/events/stream", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    start = await next_message(resp)  # retry hint, then the starting checkpoint
    assert "retry" in start
    assert (await next_message(resp))["id"] == "0"
    gif = await tracking.get(f"/o/{codec.open_token(spooled.copies[BOB].id)}.gif")
    assert gif.status == 200
    message = await next_event(resp)
    assert message["event"] == "open"
    data = json.loads(message["data"])
    assert data["recipient"] == BOB and data["message_id"] == spooled.message_id
    assert data["type"] == "open" and isinstance(data["id"], int)
    scrape = await admin.get("/metrics", headers=AUTH)
    assert f'relay_tracking_events_total{{class="{data["class"]}",kind="open"}} 1.0' in (
        await scrape.text()
    )


async def test_events_recorded_by_another_process_arrive(
    store: Store, spooled: Any, serve: Any, tmp_path: Path
) -> None:
    app = create_admin_app(config(), store)
    app[FOLLOWER].interval = 0.05
    client = await serve(app)
    resp = await client.get("/api/events/stream?type=click", headers=AUTH)
    await next_message(resp)
    other = open_store(StoreConfig(path=str(tmp_path / "relay.db")))  # as `relay smtp` would
    await other.open()
    try:
        await other.record_event(spooled.event(BOB, "open"))  # filtered out by ?type=click
        click_id = await other.record_event(spooled.event(BOB, "click"))
    finally:
        await other.close()
    message = await next_event(resp)
    assert message["event"] == "click"
    assert json.loads(message["data"])["id"] == click_id
    checkpoint = await next_message(resp)
    assert checkpoint == {"id": str(click_id)}


async def test_resumes_after_last_event_id(store: Store, spooled: Any, serve: Any) -> None:
    ids = [await store.record_event(spooled.event(BOB)) for _ in range(3)]
    client = await serve(create_admin_app(config(), store))
    for how in ({"headers": {**AUTH, "Last-Event-ID": str(ids[0])}}, {"headers": AUTH}):
        query = "" if "Last-Event-ID" in how["headers"] else f"?last_event_id={ids[0]}"
        resp = await client.get(f"/api/events/stream{query}", **how)
        got = [await next_event(resp) for _ in range(2)]
        assert [int(m["id"]) for m in got] == ids[1:]
        assert (await next_message(resp))["id"] == str(ids[2])
        resp.close()


async def test_idle_stream_gets_heartbeats_and_ends_at_shutdown(store: Store, serve: Any) -> None:
    broker = EventBroker()
    app = create_admin_app(config(), store, broker=broker)
    app[LIVE_FEED].heartbeat = 0.05
    client = await serve(app)
    resp = await client.get("/api/events/stream", headers=AUTH)
    while (await next_message(resp)).get("") != "ping":
        pass
    broker.close()  # what the app's on_shutdown does
    async with asyncio.timeout(GUARD):
        rest = await resp.content.read()
    assert b"data:" not in rest and resp.content.at_eof()


async def test_a_slow_subscriber_is_dropped_and_never_blocks_publishing() -> None:
    broker = EventBroker(queue_size=3)
    slow, fast = broker.subscribe(), broker.subscribe()
    events = [Event("open", 1, "m", BOB, 0.0, "", "", id=i) for i in range(1, 11)]
    for event in events:
        broker.publish([event])  # returns at once, whoever lags
        assert (await fast.next_batch(GUARD)) == [event]
    assert await slow.next_batch(GUARD) is None  # its events left the log
    assert slow.dropped and not fast.dropped
    assert broker.subscribers == 1


async def test_a_feed_takes_all_it_missed_in_one_read() -> None:
    broker = EventBroker()
    sub = broker.subscribe()
    events = [Event("open", 1, "m", BOB, 0.0, "", "", id=i) for i in range(1, 6)]
    for event in events:
        broker.publish([event])
    assert await sub.next_batch(GUARD) == events
    assert await sub.next_batch(0.01) == []  # silence: the stream sends a ping


async def test_follower_checkpoints_skip_what_was_pushed() -> None:
    broker = EventBroker()
    sub = broker.subscribe()
    pushed = Event("open", 1, "m", BOB, 0.0, "", "", id=5)
    polled = Event("click", 1, "m", BOB, 0.0, "", "", id=4)
    broker.publish([pushed])
    broker.publish_from_store([polled, pushed], upto=5)
    assert await sub.next_batch(GUARD) == [pushed, polled, Checkpoint(5)]
    broker.publish([pushed])  # at or below the checkpoint: already sent
    assert await sub.next_batch(0.01) == []


async def test_follower_reads_no_event_while_no_feed_is_open(store: Store, spooled: Any) -> None:
    """Only the checkpoint moves; a feed opened later starts from the store."""
    broker = EventBroker()
    follower = StoreFollower(store, broker)
    for _ in range(3):
        await store.record_event(spooled.event(BOB))
    assert await follower.poll_once() == 0
    assert broker.checkpoint == await store.last_event_id()
    broker.publish([Event("open", 1, "m", BOB, 0.0, "", "", id=99)])  # no one to push to
    sub = broker.subscribe()
    assert await sub.next_batch(0.01) == []
    await store.record_event(spooled.event(BOB))
    assert await follower.poll_once() == 1  # with a feed open, events are read again
    batch = await sub.next_batch(GUARD)
    assert batch is not None
    assert batch[-1] == Checkpoint(await store.last_event_id())
