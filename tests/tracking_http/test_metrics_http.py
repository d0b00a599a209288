"""/metrics: the process's own figures and a latency histogram for each HTTP listener."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from relay.core.config import AdminConfig, Config
from relay.core.metrics import Metrics
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.app import create_admin_app, create_tracking_app
from tracking_http.latency import add_request_timing

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = Config(admin=AdminConfig(token=TOKEN))


def count(text: str, listener: str, route: str) -> float:
    pattern = (
        rf'relay_http_request_duration_seconds_count\{{listener="{listener}",'
        rf'route="{re.escape(route)}"\}} (\S+)'
    )
    found = re.search(pattern, text)
    return 0.0 if found is None else float(found.group(1))


async def test_both_listeners_are_timed_by_route_template(
    store: Store, codec: TokenCodec, spooled: Any, serve: Any
) -> None:
    metrics = Metrics()
    tracking = await serve(create_tracking_app(CONFIG, store, codec, metrics=metrics))
    admin = await serve(create_admin_app(CONFIG, store, metrics))
    copy = spooled.copies["bob@example.net"]
    for _ in range(3):
        assert (await tracking.get(f"/o/{codec.open_token(copy.id)}.gif")).status == 200
    assert (await tracking.get("/o/forged.gif")).status == 200  # a gif, whatever the token
    assert (await tracking.get("/nothing/here")).status == 404
    assert (await admin.get("/api/messages", headers=AUTH)).status == 200

    text = await (await admin.get("/metrics", headers=AUTH)).text()
    assert count(text, "tracking", "/o/{token}.gif") == 4  # the path's token is not a label
    assert count(text, "tracking", "unmatched") == 1
    assert count(text, "admin", "/api/messages") == 1
    assert "forged" not in text and "/nothing/here" not in text
    buckets = re.findall(r'relay_http_request_duration_seconds_bucket\{le="([^"]+)",listener', text)
    assert "0.0005" in buckets and "+Inf" in buckets


async def test_process_metrics(store: Store, serve: Any) -> None:
    admin = await serve(create_admin_app(CONFIG, store, Metrics()))
    text = await (await admin.get("/metrics", headers=AUTH)).text()
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_gc_collections_total",
        "python_info",
    ):
        assert re.search(rf"^{name}(\{{.*\}})? ", text, re.MULTILINE), name


async def test_a_streamed_answer_is_not_counted(serve: Any) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        return response

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    metrics = Metrics()
    app = web.Application()
    app.router.add_get("/stream", stream)
    app.router.add_get("/page", page)
    add_request_timing(app, metrics.http_latency, "admin")
    client = await serve(app)
    assert (await client.get("/stream")).status == 200
    assert (await client.get("/page")).status == 200
    text = (await metrics.render(None))[0].decode()
    assert count(text, "admin", "/page") == 1
    assert count(text, "admin", "/stream") == 0


async def test_a_failing_handler_is_still_timed(serve: Any) -> None:
    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    metrics = Metrics()
    app = web.Application()
    app.router.add_get("/broken", broken)
    add_request_timing(app, metrics.http_latency, "tracking")
    client = await serve(app)
    assert (await client.get("/broken")).status == 500
    assert count((await metrics.render(None))[0].decode(), "tracking", "/broken") == 1
