"""SIGHUP on a running relay: new network data is used, nothing stops, nothing is lost."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
from support.processes import SinkHandler, relay_one, start_role, stop_role, write_config

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: reload\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><img src="https://example.com/logo.png" alt="Example">'
    b"<p>Hello Bob, here is the offer.</p></body></html>\r\n"
)
NEW_RELAY_NETWORK = "192.0.2.0/24"  # stands for Private Relay space newer than the snapshot


async def open_classes(admin: str) -> list[tuple[str, list[str]]]:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0ken"}) as http:
        async with http.get(f"{admin}/api/events?type=open") as answer:
            assert answer.status == 200
            events = (await answer.json())["events"]
    return [(e["class"], e["reasons"]) for e in events]


async def test_sighup_reads_new_network_data_and_keeps_serving(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    data = tmp_path / "data"
    data.mkdir()
    config, ports = write_config(
        tmp_path, sink_port, tracking=f'trusted_proxies = ["127.0.0.0/8"]\ndata_dir = "{data}"\n'
    )
    relay = start_role("serve", config, ports["tracking"])
    admin = f"http://127.0.0.1:{ports['admin']}"
    try:
        delivered = relay_one(ports["smtp"], handler, MESSAGE)
        pixel = re.search(rb'src="(http://127\.0\.0\.1:\d+/o/[^"]+)"', delivered)
        assert pixel is not None
        mpp = {"User-Agent": "Mozilla/5.0", "X-Forwarded-For": "192.0.2.44"}
        async with aiohttp.ClientSession(headers=mpp) as http:
            async with http.get(pixel.group(1).decode()) as answer:
                assert answer.status == 200
            (data / "apple_private_relay.txt").write_text(
                f"apple {NEW_RELAY_NETWORK}\n", encoding="utf-8"
            )
            relay.send_signal(signal.SIGHUP)
            for _ in range(100):  # the reload runs off the loop; the relay keeps answering
                await asyncio.sleep(0.05)
                async with http.get(pixel.group(1).decode()) as answer:
                    assert answer.status == 200
                if (await open_classes(admin))[-1][1] == ["net:apple-mpp"]:
                    break
        assert relay.poll() is None
        classes = await open_classes(admin)
        assert classes[0] == ("proxy", ["ua:bare-mozilla"])
        assert classes[-1] == ("proxy", ["net:apple-mpp"])
    finally:
        stop_role(relay)
