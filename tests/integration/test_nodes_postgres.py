"""Several nodes on one PostgreSQL (SPEC 9): each role its own process and config, as on
separate hosts; the only thing they share is the database (and its token keys).

Mail goes in on node A, the reader's pixel and click go to node B, and node C's API and
live feed show both. Then a delivery node is killed with SIGKILL while the upstream is
down, with copies in flight: after the upstream comes back and another delivery node
starts, every accepted message is delivered, and only copies that were in flight at
the kill may have gone twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from support.processes import (
    SinkHandler,
    end_process,
    free_port,
    relay_command,
    relay_env,
    running_sink,
    spawn_relay,
    wait_for_port,
)

TOKEN = "n0des"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
THUNDERBIRD = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.3.1"
}
GUARD = 30.0  # seconds before a hung step fails instead of hanging; not a measurement


def node(
    home: Path, url: str, upstream: str, tracking_base: str, extra: str = 'timeout = "10m"\n'
) -> tuple[Path, dict[str, int]]:
    """One node's config: its own listeners, the shared database."""
    home.mkdir()
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    config = home / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\nflow_delay = "0s"\n'
        f'[upstream]\nurl = "{upstream}"\nlease_time = "3s"\nretry_schedule = ["1s"]\n{extra}'
        f'[tracking]\nbase_url = "{tracking_base}"\n'
        f'listen = "127.0.0.1:{ports["tracking"]}"\navoid_image_only = false\n'
        'bot_open_window = "0s"\nbot_click_window = "0s"\n'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "{TOKEN}"\n'
        f'[store]\nurl = "{url}"\n',
        encoding="utf-8",
    )
    return config, ports


def start(config: Path, role: str, port: int | None) -> subprocess.Popen[bytes]:
    proc = spawn_relay(config, role=role, log=config.parent / "relay.log")
    if port is not None:
        wait_for_port(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        end_process(proc, timeout=30)


def html(tag: str) -> bytes:
    return (
        f"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.com>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/html; charset=utf-8\r\n\r\n"
        f'<html><body><p>{tag}</p><a href="https://example.com/{tag}">read</a>'
        "</body></html>\r\n"
    ).encode()


def migrate(url: str, home: Path) -> None:
    done = subprocess.run(
        relay_command("migrate", "--store", url), cwd=home, env=relay_env(),
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


async def sse_events(response: aiohttp.ClientResponse, wanted: int) -> list[dict[str, object]]:
    """The data of the first `wanted` events of a live feed."""
    found: list[dict[str, object]] = []
    async with asyncio.timeout(GUARD):
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data:") and line[5:].strip().startswith("{"):
                found.append(json.loads(line[5:]))
                if len(found) == wanted:
                    return found
    raise AssertionError(f"the feed ended after {found}")


async def test_mail_on_one_node_tracked_on_another_seen_on_a_third(
    tmp_path: Path, postgres_url: str, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    migrate(postgres_url, tmp_path)
    b_tracking = free_port()
    base = f"http://127.0.0.1:{b_tracking}"
    upstream = f"smtp://127.0.0.1:{sink_port}"
    a, a_ports = node(tmp_path / "a", postgres_url, upstream, base)
    b, b_ports = node(tmp_path / "b", postgres_url, upstream, base)
    b.write_text(b.read_text().replace(f':{b_ports["tracking"]}"', f':{b_tracking}"'))
    c, c_ports = node(tmp_path / "c", postgres_url, upstream, base)
    procs = [
        start(a, "smtp", a_ports["smtp"]),
        start(b, "http", b_tracking),
        start(c, "http", c_ports["admin"]),
    ]
    try:
        admin = f"http://127.0.0.1:{c_ports['admin']}"
        async with aiohttp.ClientSession(headers=THUNDERBIRD) as http:
            feed = await http.get(f"{admin}/api/events/stream", headers=AUTH)
            assert feed.status == 200
            with smtplib.SMTP("127.0.0.1", a_ports["smtp"], timeout=10) as client:
                client.sendmail("alice@example.com", ["bob@example.net"], html("nodes"))
            [copy] = handler.wait_for(1)
            pixel = re.search(rb'src="(http://[^"]+/o/[^"]+\.gif)"', copy.data)
            link = re.search(rb'href="(http://[^"]+/c/[^"]+)"', copy.data)
            assert pixel is not None and link is not None
            assert pixel.group(1).startswith(base.encode())  # node B's address
            async with http.get(pixel.group(1).decode()) as answer:
                assert answer.status == 200
            async with http.get(link.group(1).decode(), allow_redirects=False) as answer:
                assert answer.headers["Location"] == "https://example.com/nodes"
            pushed = await sse_events(feed, 2)
            feed.close()
            assert sorted(str(e["type"]) for e in pushed) == ["click", "open"]
            async with http.get(f"{admin}/api/messages", headers=AUTH) as answer:
                [summary] = (await answer.json())["messages"]
        assert summary["subject"] == "nodes"
        assert summary["opens"]["human"] == 1 and summary["clicks"]["human"] == 1
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture
def hung_port() -> Iterator[tuple[socket.socket, int]]:
    """An upstream that is down: it takes connections and never says a word."""
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind(("127.0.0.1", 0))
    hung.listen(128)
    yield hung, hung.getsockname()[1]
    hung.close()


def in_flight(url: str, pid: int) -> set[str]:
    """The subjects of the copies a delivery process (by pid) holds leases on."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT m.subject FROM copies c JOIN messages m ON m.id = c.message_id"
            " WHERE c.lease_owner LIKE %s AND c.state IN ('queued', 'deferred')",
            (f"%/{pid}/%",),
        ).fetchall()
    return {str(r[0]) for r in rows}


def deliverer_pids(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT name FROM leases WHERE name LIKE 'deliverer/%%' AND until > %s",
            (time.time(),),
        ).fetchall()
    return {int(str(r[0]).split("/")[2]) for r in rows}


def test_a_killed_delivery_node_loses_nothing(
    tmp_path: Path, postgres_url: str, hung_port: tuple[socket.socket, int]
) -> None:
    hung, port = hung_port
    migrate(postgres_url, tmp_path)
    upstream = f"smtp://127.0.0.1:{port}"
    base = "http://127.0.0.1:9"
    # The front gives up on the hung upstream at once; node D holds its copies in flight.
    front, front_ports = node(tmp_path / "front", postgres_url, upstream, base,
                              'delivery_process = false\ntimeout = "1s"\n')  # fmt: skip
    deliver, _ = node(tmp_path / "deliver", postgres_url, upstream, base,
                      'max_connections = 4\ntimeout = "10m"\n')  # fmt: skip
    smtp = start(front, "smtp", front_ports["smtp"])
    worker = start(deliver, "deliver", None)
    tags = [f"m{i:02d}" for i in range(20)]
    try:
        with smtplib.SMTP("127.0.0.1", front_ports["smtp"], timeout=10) as client:
            for tag in tags:
                client.sendmail("alice@example.com", ["bob@example.net"], html(tag))
        stop(smtp)  # the front delivered too, to the same hung upstream: only node D now
        deadline = time.monotonic() + GUARD
        while worker.pid not in deliverer_pids(postgres_url) or not in_flight(
            postgres_url, worker.pid
        ):
            assert time.monotonic() < deadline, "the delivery node took nothing"
            time.sleep(0.1)
        cut = in_flight(postgres_url, worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        # max_connections copies were being sent, and up to one and a half claims (of
        # max_connections each) taken ahead and not started
        assert 0 < len(cut) <= 4 + 4 + 4 // 2

        hung.close()  # the upstream comes back on the same port
        with running_sink(port) as (handler, _):
            again = start(deliver, "deliver", None)
            try:
                got = wait_for_subjects(handler, set(tags))
            finally:
                stop(again)
    finally:
        stop(smtp)
        stop(worker)
    counts = {tag: got.count(tag) for tag in tags}
    assert set(counts) == set(tags) and min(counts.values()) == 1  # nothing lost
    twice = {tag for tag, n in counts.items() if n > 1}
    assert twice <= cut  # a copy went twice only if it was in flight at the kill


def subjects(handler: SinkHandler) -> list[str]:
    found = (re.search(rb"^Subject: (\S+)", r.data, re.MULTILINE) for r in handler.messages)
    return [m.group(1).decode() for m in found if m is not None]


def wait_for_subjects(handler: SinkHandler, wanted: set[str]) -> list[str]:
    """What the sink got, once it has every wanted subject (and a second more)."""
    deadline = time.monotonic() + GUARD
    while not set(subjects(handler)) >= wanted:
        assert time.monotonic() < deadline, f"delivered only {sorted(set(subjects(handler)))}"
        time.sleep(0.1)
    time.sleep(1.0)  # a second send of anything would arrive by now
    return subjects(handler)
