"""As an attacker on the Internet: floods of idle and half-sent connections against a running
relay with few file descriptors. A well-behaved client must still get its pixel, its
redirect, /healthz and an SMTP session, and the log must stay small."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import signal
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from support.processes import SinkHandler, free_port, spawn_relay, wait_for_port

FILES = 420  # the relay's open-file limit: fewer than the flood's connections
HALF_SENT = b"GET /o/abc.gif HTTP/1.1\r\nHost: t.example\r\nUser-Agent: slow"
MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: flood\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><img src="https://example.com/logo.png" alt="Example">'
    b'<a href="https://example.com/offer">offer</a></body></html>\r\n'
)
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def small_limits() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


@pytest.fixture
def ports() -> dict[str, int]:
    return {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}


@pytest.fixture
def relay(
    tmp_path: Path, ports: dict[str, int], sink: tuple[SinkHandler, int]
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\nallowed_networks = ["127.0.0.0/8"]\n'
        "max_sessions = 40\nmax_sessions_per_address = 10\n"
        f'[upstream]\nurl = "smtp://127.0.0.1:{sink[1]}"\n'
        f'[tracking]\nbase_url = "http://127.0.0.1:{ports["tracking"]}"\n'
        f'listen = "127.0.0.1:{ports["tracking"]}"\nbot_click_window = "0s"\n'
        'max_connections = 250\nmax_connections_per_address = 100\nheader_timeout = "1s"\n'
        'idle_timeout = "60s"\n'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "t0ken"\nmax_connections = 32\n',
        encoding="utf-8",
    )
    log = tmp_path / "relay.log"
    proc = spawn_relay(config, log=log, preexec_fn=small_limits)
    wait_for_port(ports["tracking"], proc)
    wait_for_port(ports["admin"], proc)
    yield proc, log
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text(errors="replace")[-3000:]


async def connect(port: int, source: str) -> Conn | None:
    try:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return None


async def flood(port: int, source: str, count: int, first: bytes = b"") -> list[Conn]:
    conns = [c for c in await asyncio.gather(*(connect(port, source) for _ in range(count))) if c]
    assert len(conns) == count, "the listen backlog dropped connects"
    if first:
        for _reader, writer in conns:
            writer.write(first)
    return conns


async def answer(conn: Conn, wait: float = 3.0) -> bytes:
    with contextlib.suppress(TimeoutError, ConnectionError):
        return await asyncio.wait_for(conn[0].read(200), wait)
    return b"(nothing)"


def send_mail(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], MESSAGE)


async def test_floods_leave_room_for_a_well_behaved_client(
    relay: tuple[subprocess.Popen[bytes], Path],
    ports: dict[str, int],
    sink: tuple[SinkHandler, int],
) -> None:
    proc, log = relay
    handler, _ = sink
    await asyncio.to_thread(send_mail, ports["smtp"])
    [delivered] = await asyncio.to_thread(handler.wait_for, 1)
    pixel = re.search(rb'src="(http://[^"]+/o/[^"]+)"', delivered.data)
    link = re.search(rb'href="(http://[^"]+/c/[^"]+)"', delivered.data)
    assert pixel is not None and link is not None

    # 200 idle and 200 half-sent connections from each of two addresses, 60 idle SMTP
    # sessions from two more: more than the relay has file descriptors.
    idle = await flood(ports["tracking"], "127.0.0.2", 200)
    half = await flood(ports["tracking"], "127.0.0.3", 200, HALF_SENT)
    smtp_idle = await flood(ports["smtp"], "127.0.0.4", 30)
    smtp_idle += await flood(ports["smtp"], "127.0.0.5", 30)
    replies = await asyncio.gather(*(answer(c, 2.0) for c in idle[100:]))
    assert all(r.startswith(b"HTTP/1.1 503") for r in replies), replies[:3]
    greetings = await asyncio.gather(*(answer(c) for c in smtp_idle))
    assert sum(g.startswith(b"220 ") for g in greetings) == 20
    assert sum(g.startswith(b"421 4.7.0") for g in greetings) == 40

    # The well-behaved client, while the flood holds its connections.
    async with aiohttp.ClientSession(headers={"User-Agent": "Thunderbird/128.0"}) as http:
        async with http.get(pixel.group(1).decode()) as resp:
            assert resp.status == 200
        async with http.get(link.group(1).decode(), allow_redirects=False) as resp:
            assert resp.status == 302
            assert resp.headers["Location"] == "https://example.com/offer"
        async with http.get(f"http://127.0.0.1:{ports['tracking']}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{ports['admin']}/healthz") as resp:
            assert resp.status in (200, 401, 404)  # answered, whatever the route
    await asyncio.to_thread(send_mail, ports["smtp"])
    await asyncio.to_thread(handler.wait_for, 2)

    # Half-sent requests are closed after header_timeout; idle ones wait for idle_timeout.
    closed = await asyncio.gather(*(answer(c, 4.0) for c in half[:100]))
    assert all(c in (b"", b"(nothing)") for c in closed)
    assert all(c[0].at_eof() for c in half[:100])
    assert not any(c[0].at_eof() for c in idle[:100])

    # A burst of 500 connects at once: every one is accepted by the kernel's backlog.
    burst = await flood(ports["tracking"], "127.0.0.6", 500)
    for conns in (idle, half, smtp_idle, burst):
        for _reader, writer in conns:
            writer.close()
    assert proc.poll() is None
    assert log.stat().st_size < 32 * 1024, log.read_text(errors="replace")[-2000:]
