"""/healthz, /readyz and whether delivery runs, on a running relay, as a monitor sees them."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
from support.processes import SinkHandler, start_role, write_config

AUTH = {"Authorization": "Bearer t0ken"}


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as answer:
        return answer.status, await answer.text()


async def delivery_gauge(http: aiohttp.ClientSession, admin: str) -> str:
    async with http.get(f"{admin}/metrics", headers=AUTH) as answer:
        text = await answer.text()
    found = re.search(r"^relay_delivery_running (\S+)$", text, re.MULTILINE)
    assert found is not None, text[:500]
    return found.group(1)


async def test_health_readiness_and_delivery_on_every_listener(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    config, ports = write_config(tmp_path, sink[1])
    relay = start_role("serve", config, ports["admin"])
    tracking = f"http://127.0.0.1:{ports['tracking']}"
    admin = f"http://127.0.0.1:{ports['admin']}"
    try:
        async with aiohttp.ClientSession() as http:
            for base in (tracking, admin):  # no token needed for the checks
                assert await get(http, f"{base}/healthz") == (200, "ok")
                assert await get(http, f"{base}/readyz") == (200, "ready")
            for _ in range(50):  # the delivery process takes its lock just after start
                if await delivery_gauge(http, admin) == "1.0":
                    break
                await asyncio.sleep(0.1)
            assert await delivery_gauge(http, admin) == "1.0"

            # Draining: a session in DATA holds the stop; meanwhile /readyz says 503 and
            # everything else still answers.
            reader, writer = await asyncio.open_connection("127.0.0.1", ports["smtp"])
            await reader.readline()
            for command in (b"EHLO c\r\n", b"MAIL FROM:<a@example.com>\r\n"):
                writer.write(command)
                await writer.drain()
                while (await reader.readline())[3:4] == b"-":
                    pass
            writer.write(b"RCPT TO:<b@example.net>\r\nDATA\r\n")
            assert (await reader.readline()).startswith(b"250")
            assert (await reader.readline()).startswith(b"354")
            writer.write(b"Subject: draining\r\n\r\nhello\r\n")
            relay.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert await get(http, f"{admin}/readyz") == (503, "draining\n")
            assert await get(http, f"{tracking}/readyz") == (503, "draining\n")
            assert (await get(http, f"{tracking}/healthz"))[0] == 200
            writer.write(b".\r\nQUIT\r\n")
            assert (await reader.readline()).startswith(b"250")
            writer.close()
        assert relay.wait(timeout=60) == 0
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()


async def test_http_role_alone_says_nobody_delivers(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    config, ports = write_config(tmp_path, sink[1])
    relay = start_role("http", config, ports["admin"])
    try:
        async with aiohttp.ClientSession() as http:
            assert await delivery_gauge(http, f"http://127.0.0.1:{ports['admin']}") == "0.0"
    finally:
        relay.terminate()
        assert relay.wait(timeout=30) == 0
