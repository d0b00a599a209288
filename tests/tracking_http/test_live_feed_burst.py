"""The live feed under a burst: every connected feed receives every event.

Real servers on real sockets: the tracking app takes a burst of pixel hits
from many concurrent clients while several SSE clients follow the admin
stream. Each feed must end up with exactly the ids the store holds. With a
log of 1,000 items a feed that handles one event per wake-up (as the first
version did) falls more than that behind and is dropped, ending its stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientResponse, ClientSession, TCPConnector

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.models import DeliveryOutcome
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.app import FOLLOWER, create_admin_app, create_tracking_app
from tracking_http.notify import EventBroker, recorded_sink

TOKEN = "burst-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEEDS = 8
HITS = 4000
IN_FLIGHT = 100
LOG_SIZE = 1000
GUARD = 60.0  # seconds before a hung test fails instead of hanging; not a measurement


def config() -> Config:
    return Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))


async def follow(resp: ClientResponse, ids: set[int | None], want: int) -> None:
    """Collect the ids of the stream's events until ``want`` arrived; fails if it ends first."""
    while len(ids) < want:
        line = await resp.content.readline()
        assert line, f"the stream ended after {len(ids)} of {want} events"
        if line.startswith(b"data:"):
            ids.add(int(json.loads(line[5:])["id"]))


async def stored_ids(store: Store, since: int) -> set[int | None]:
    ids: set[int | None] = set()
    while page := await store.list_events(since, limit=1000):
        ids |= {e.id for e in page}
        since = page[-1].id or since
    return ids


async def burst(url: str, tokens: list[str]) -> None:
    """HITS pixel requests, IN_FLIGHT at a time, each answered with the GIF."""
    async with ClientSession(connector=TCPConnector(limit=IN_FLIGHT)) as session:

        async def hit(token: str) -> None:
            async with session.get(f"{url}/o/{token}.gif") as resp:
                assert resp.status == 200
                await resp.read()

        await asyncio.gather(*(hit(tokens[i % len(tokens)]) for i in range(HITS)))


async def test_every_feed_receives_every_event_of_a_burst(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    for copy in spooled.copies.values():
        await store.record_outcome(copy.id, DeliveryOutcome("delivered", "250"), None)
    broker = EventBroker(queue_size=LOG_SIZE)
    admin_app = create_admin_app(config(), store, broker=broker)
    admin_app[FOLLOWER].interval = 0.2  # checkpoints flow during the burst, as in production
    admin = await serve(admin_app)
    tracking = await serve(create_tracking_app(config(), store, codec, recorded_sink(broker, None)))
    start = await store.last_event_id()
    feeds = [await admin.get("/api/events/stream", headers=AUTH) for _ in range(FEEDS)]
    assert all(resp.status == 200 for resp in feeds)
    received: list[set[int | None]] = [set() for _ in feeds]
    tokens = [codec.open_token(copy.id) for copy in spooled.copies.values()]
    async with asyncio.timeout(GUARD):
        following = [
            asyncio.create_task(follow(resp, ids, HITS))
            for resp, ids in zip(feeds, received, strict=True)
        ]
        await burst(str(tracking.make_url("")).rstrip("/"), tokens)
        await asyncio.gather(*following)
    stored = await stored_ids(store, start)
    assert len(stored) == HITS
    for ids in received:
        assert ids == stored
    assert broker.subscribers == FEEDS  # none was dropped
