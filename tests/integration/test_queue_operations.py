"""The queue from outside: kill -9 loses nothing, SIGTERM drains, `relay queue`, /metrics.

Everything is real: `python -m relay serve` subprocesses, smtplib clients, an
aiosmtpd sink that comes up (on a port chosen in advance) only when a test says.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import smtplib
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.error import HTTPError

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from support.processes import (
    SinkHandler,
    free_port,
    relay_command,
    relay_env,
    relay_toml,
    start_relay,
    stop_relay,
)

from relay.core.config import StoreConfig
from relay.core.models import Copy
from relay.core.store import open_store

SUBJECT = re.compile(rb"Subject: tag (\S+)")


def config(upstream_port: int, retry: str = "1s") -> str:
    return relay_toml(
        f"smtp://127.0.0.1:{upstream_port}",
        upstream=f'retry_schedule = ["{retry}"]\ntimeout = "5s"',
    )


def message(tag: str) -> bytes:
    return f"From: a@example.com\r\nTo: b@example.net\r\nSubject: tag {tag}\r\n\r\nhi\r\n".encode()


@contextmanager
def sink_on(port: int, handler: object | None = None) -> Iterator[SinkHandler]:
    """An aiosmtpd sink on a port picked before the relay started."""
    sink = handler if handler is not None else SinkHandler()
    controller = Controller(sink, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield sink  # type: ignore[misc]
    finally:
        controller.stop()


def tags_of(sink: SinkHandler) -> set[str]:
    with sink.arrived:
        return {m.group(1).decode() for r in sink.messages if (m := SUBJECT.search(r.data))}


def keep_sending(port: int, name: str, accepted: list[str], stop: threading.Event) -> None:
    """Send until told to stop; remember every tag the relay answered 250 for."""
    for i in range(100_000):
        if stop.is_set():
            return
        tag = f"{name}-{i}"
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
                client.sendmail("a@example.com", ["b@example.net"], message(tag))
            accepted.append(tag)
        except (smtplib.SMTPException, OSError):
            time.sleep(0.01)


def test_kill_9_while_clients_send_loses_no_accepted_message(tmp_path: Path) -> None:
    upstream = free_port()  # nothing listens there yet: the upstream is down
    relay = start_relay(tmp_path, config(upstream))
    accepted: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=keep_sending, args=(relay.smtp_port, f"c{n}", accepted, stop))
        for n in range(4)
    ]
    for thread in clients:
        thread.start()
    time.sleep(random.uniform(0.8, 2.0))  # a random moment, clients mid-transaction
    relay.proc.kill()
    relay.proc.communicate()
    stop.set()
    for thread in clients:
        thread.join()
    assert len(accepted) >= 4, "the relay accepted almost nothing before the kill"
    with sink_on(upstream) as sink:
        again = start_relay(tmp_path, config(upstream))
        try:
            deadline = time.monotonic() + 60
            while not set(accepted) <= tags_of(sink) and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop_relay(again)
    missing = set(accepted) - tags_of(sink)
    assert not missing, f"{len(missing)} of {len(accepted)} accepted messages lost"


class SlowSink(SinkHandler):
    """Holds each DATA reply for a while, so a delivery is in flight when SIGTERM comes."""

    def __init__(self) -> None:
        super().__init__()
        self.in_data = threading.Event()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_data.set()
        await asyncio.sleep(2.0)
        return await super().handle_DATA(server, session, envelope)


def test_sigterm_lets_the_delivery_in_flight_finish(tmp_path: Path) -> None:
    upstream = free_port()
    with sink_on(upstream, SlowSink()) as sink:
        assert isinstance(sink, SlowSink)
        relay = start_relay(tmp_path, config(upstream))
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.net"], message("drain"))
        assert sink.in_data.wait(20)
        code, err = stop_relay(relay)  # SIGTERM while the upstream sits on DATA
        assert code == 0, err
        assert tags_of(sink) == {"drain"}
    copies = asyncio.run(_copies(tmp_path / "relay.db"))
    assert [(c.state, c.queue_id) for c in copies] == [("delivered", "SINK1")]


async def _copies(path: Path) -> list[Copy]:
    """Every copy in the store file the relay left behind."""
    store = open_store(StoreConfig(path=str(path)))
    await store.open()
    try:
        page, _ = await store.list_messages(limit=10)
        return [c for summary in page for c in await store.copies_of(summary.message.id)]
    finally:
        await store.close()


def queue(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        relay_command("queue", *args, "--config", str(workdir / "relay.toml")),
        cwd=workdir, env=relay_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def admin_get(url: str, token: str | None = "t0ken") -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for_deferred(workdir: Path, count: int) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        listing = queue(workdir, "list").stdout
        if listing.count(" deferred ") >= count:
            return listing
        time.sleep(0.3)
    raise AssertionError(f"never {count} deferred copies:\n{listing}")


def test_queue_commands_and_metrics_against_a_running_relay(tmp_path: Path) -> None:
    upstream = free_port()
    relay = start_relay(tmp_path, config(upstream, retry="1h"))
    try:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.net", "c@example.net"], message("one"))
            client.sendmail("a@example.com", ["d@example.net"], message("two"))
        listing = wait_for_deferred(tmp_path, 3)
        assert "3 copies in the queue" in listing and "d@example.net" in listing
        message_id = re.search(r"\d+\s+([0-9a-f]{20})\s+deferred", listing).group(1)  # type: ignore[union-attr]

        status, body = admin_get(f"{relay.admin_url}/api/messages/{message_id}")
        assert status == 200
        for rcpt in json.loads(body)["recipients"]:
            assert rcpt["state"] == "deferred" and rcpt["attempts"] == 1
            assert rcpt["last_reply"] and rcpt["next_attempt_at"] and rcpt["queue_id"] == ""

        assert admin_get(f"{relay.admin_url}/metrics", token=None)[0] == 401
        status, metrics = admin_get(f"{relay.admin_url}/metrics")
        assert status == 200
        assert 'relay_queue_copies{state="deferred"} 3.0' in metrics
        assert "relay_messages_accepted_total 2.0" in metrics
        assert 'relay_deliveries_total{outcome="deferred"} 3.0' in metrics
        assert "relay_upstream_latency_seconds_count 3.0" in metrics

        shown = queue(tmp_path, "show", message_id)
        assert shown.returncode == 0 and "next try" in shown.stdout
        first_copy = re.search(r"^\s+(\d+)\s", listing.splitlines()[1]).group(1)  # type: ignore[union-attr]
        deleted = queue(tmp_path, "delete", first_copy)
        assert (deleted.returncode, deleted.stdout.strip()) == (0, "deleted 1 copies")
        assert queue(tmp_path, "delete", first_copy).returncode == 1  # gone now
        assert queue(tmp_path, "show", "999999").returncode == 1

        with sink_on(upstream) as sink:
            retried = queue(tmp_path, "retry")
            assert retried.returncode == 0, retried.stderr
            assert "100% 2/2" in retried.stderr and "retrying 2 copies now" in retried.stdout
            sink.wait_for(2, timeout=20)
        assert "0 copies in the queue" in queue(tmp_path, "list").stdout
    finally:
        stop_relay(relay)
