"""tracking.workers and smtp.workers: several processes on one port (SO_REUSEPORT).

One relay, started once as a real process (`relay serve`, 3 tracking and 2 SMTP
processes), goes through the tests in order: who listens, pixels over fresh
connections, mail over several connections, /metrics, the live feed, a worker
killed with SIGKILL, and last SIGTERM. Which process answered is read from
/proc and from prometheus_client's per-process files, never from the answers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from support.processes import SinkHandler, free_port, running_sink, spawn_relay, wait_for_port

TOKEN = "t0ken"
TRACKING_WORKERS = 3
SMTP_WORKERS = 2
PIXELS = 200
MAILS = 20
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3"


@dataclass
class Relay:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    sink: SinkHandler
    log: Path
    pixel: str = ""  # the path of a real pixel, once a mail went through

    def url(self, role: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}{path}"


def write_toml(tmp: Path, sink_port: int, ports: dict[str, int], tracking: int, smtp: int) -> Path:
    config = tmp / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\nworkers = {smtp}\n'
        f'[upstream]\nurl = "smtp://127.0.0.1:{sink_port}"\n'
        f'[tracking]\nbase_url = "http://127.0.0.1:{ports["tracking"]}"\n'
        f'listen = "127.0.0.1:{ports["tracking"]}"\nworkers = {tracking}\n'
        "avoid_image_only = false\n"
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "{TOKEN}"\n',
        encoding="utf-8",
    )
    return config


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relay]:
    tmp = tmp_path_factory.mktemp("workers")
    with running_sink() as (sink, sink_port):
        ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
        config = write_toml(tmp, sink_port, ports, TRACKING_WORKERS, SMTP_WORKERS)
        log = tmp / "relay.log"
        proc = spawn_relay(config, log=log)
        try:
            wait_for_port(ports["admin"], proc)  # the admin listener starts after the workers
            yield Relay(proc, ports, sink, log)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# --- processes, from /proc ---------------------------------------------------------------


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    fresh = {pid}
    while fresh:
        children = {
            int(entry)
            for entry in os.listdir("/proc")
            if entry.isdigit() and parent_of(int(entry)) in fresh
        }
        fresh = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its parent is not, unless its other threads still run
    (the leader of a killed thread group is a zombie before them, and their files, its
    listening socket among them, stay open until the last one ends)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" or threads > 1


LISTEN, ESTABLISHED = "0A", "01"


def listeners(port: int, pids: set[int], state: str = LISTEN) -> set[int]:
    """Which of pids hold a socket on local port in state (listening, or a connection)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in pids:
        with_socket = False
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    with_socket = with_socket or os.readlink(f"/proc/{pid}/fd/{fd}") in inodes
                except OSError:
                    continue
        except OSError:
            continue
        if with_socket:
            holders.add(pid)
    return holders


def relay_listeners(relay: Relay, role: str) -> set[int]:
    main = relay.proc.pid
    return listeners(relay.ports[role], descendants(main) | {main})


def wait_until(predicate: object, timeout: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def counts_by_process(relay: Relay, sample_name: str) -> dict[int, float]:
    """A counter's value in each process's own file of prometheus_client's multi-process
    mode, whose directory the workers inherit."""
    worker = next(iter(relay_listeners(relay, "tracking") - {relay.proc.pid}))
    environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    [folder] = [v.split(b"=", 1)[1] for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    counts = {}
    for path in Path(folder.decode()).glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        total = 0.0
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            total += sum(s.value for s in metric.samples if s.name == sample_name)
        counts[pid] = total
    return counts


# --- HTTP and SMTP -------------------------------------------------------------------------


def fresh_get(relay: Relay, path: str) -> tuple[int, str, bytes]:
    """One request on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.ports["tracking"], timeout=10)
    try:
        conn.request("GET", path, headers={"User-Agent": THUNDERBIRD, "Connection": "close"})
        answer = conn.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read()
    finally:
        conn.close()


def admin_get(relay: Relay, path: str) -> bytes:
    request = urllib.request.Request(relay.url("admin", path))
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return bytes(answer.read())


def opens_in_api(relay: Relay) -> int:
    events = json.loads(admin_get(relay, "/api/events?type=open&limit=1000"))["events"]
    return len(events)


def metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"(?m)^{name}(?:{{[^}}]*}})? (\S+)$", text))


def mail(number: int) -> bytes:
    return (
        f"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: mail {number}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f'<html><body><p>Hello {number}, <a href="https://example.com/">site</a></p>'
        "</body></html>\r\n"
    ).encode()


def test_every_listener_has_its_number_of_processes(relay: Relay) -> None:
    tracking = relay_listeners(relay, "tracking")
    smtp = relay_listeners(relay, "smtp")
    assert relay.proc.pid in tracking and relay.proc.pid in smtp
    assert len(tracking) == TRACKING_WORKERS
    assert len(smtp) == SMTP_WORKERS
    assert relay_listeners(relay, "admin") == {relay.proc.pid}


def test_mail_over_many_connections_is_all_delivered(relay: Relay) -> None:
    for number in range(MAILS):
        with smtplib.SMTP("127.0.0.1", relay.ports["smtp"], timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@example.net"], mail(number))
    delivered = relay.sink.wait_for(MAILS)
    subjects = {re.search(rb"Subject: (mail \d+)", m.data).group(1) for m in delivered}  # type: ignore[union-attr]
    assert subjects == {f"mail {n}".encode() for n in range(MAILS)}
    accepted = counts_by_process(relay, "relay_messages_accepted_total")
    assert sum(accepted.values()) == MAILS
    assert len([pid for pid, n in accepted.items() if n]) == SMTP_WORKERS, accepted
    pixel = re.search(rb'src="http://127\.0\.0\.1:\d+(/o/[^"]+\.gif)"', delivered[0].data)
    assert pixel is not None
    relay.pixel = pixel.group(1).decode()


def test_pixels_over_fresh_connections_are_all_answered_and_stored(relay: Relay) -> None:
    assert relay.pixel, "needs the mail test's pixel"
    for _ in range(PIXELS):
        status, kind, body = fresh_get(relay, relay.pixel)
        assert (status, kind) == (200, "image/gif") and body.startswith(b"GIF89a")
    wait_until(lambda: opens_in_api(relay) == PIXELS)
    by_process = counts_by_process(relay, "relay_tracking_events_total")
    answered = [pid for pid, n in by_process.items() if n]
    assert len(answered) == TRACKING_WORKERS, by_process  # the kernel spread them
    assert sum(by_process.values()) == PIXELS


def test_metrics_count_every_process(relay: Relay) -> None:
    text = admin_get(relay, "/metrics").decode()
    assert metric(text, "relay_tracking_events_total") == PIXELS
    assert metric(text, "relay_messages_accepted_total") == MAILS
    pixels = 'relay_http_request_duration_seconds_count{listener="tracking",route="/o/{token}.gif"}'
    assert f"{pixels} {float(PIXELS)}" in text
    assert "process_resident_memory_bytes" in text  # the main process's own
    assert text.count("# TYPE relay_tracking_events_total counter") <= 1


async def test_the_live_feed_shows_what_every_worker_records(relay: Relay) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    hits = 12
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(relay.url("admin", "/api/events/stream")) as stream:
            assert stream.status == 200
            for _ in range(hits):
                status, _kind, _body = fresh_get(relay, relay.pixel)
                assert status == 200
            seen = 0
            async with asyncio.timeout(15):
                async for line in stream.content:
                    seen += line == b"event: open\n"
                    if seen == hits:
                        break
    assert seen == hits


def test_sighup_reaches_every_process_and_a_new_count_waits_for_a_restart(relay: Relay) -> None:
    config = relay.proc.args[-1]  # type: ignore[index]
    text = Path(config).read_text(encoding="utf-8")
    Path(config).write_text(text.replace(f"workers = {TRACKING_WORKERS}", "workers = 4"))
    try:
        relay.proc.send_signal(signal.SIGHUP)
        processes = TRACKING_WORKERS + SMTP_WORKERS - 1  # the relay and its workers
        wait_until(lambda: relay.log.read_text().count("relay.toml reloaded") == processes)
        assert relay.log.read_text().count("tracking.workers changed; a restart applies it") == 1
        assert len(relay_listeners(relay, "tracking")) == TRACKING_WORKERS
    finally:
        Path(config).write_text(text)


def test_a_killed_worker_is_started_again_and_loses_no_count(relay: Relay) -> None:
    before = metric(admin_get(relay, "/metrics").decode(), "relay_tracking_events_total")
    workers = relay_listeners(relay, "tracking") - {relay.proc.pid}
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim))
    for _ in range(20):  # the others answer meanwhile
        assert fresh_get(relay, relay.pixel)[0] == 200
    wait_until(lambda: len(relay_listeners(relay, "tracking")) == TRACKING_WORKERS)
    assert victim not in relay_listeners(relay, "tracking")
    for _ in range(20):
        assert fresh_get(relay, relay.pixel)[0] == 200
    after = metric(admin_get(relay, "/metrics").decode(), "relay_tracking_events_total")
    assert after == before + 40  # the dead worker's counts stay in the sum
    assert "exited (killed by SIGKILL)" in relay.log.read_text()


def open_data(port: int) -> socket.socket:
    """An SMTP session inside DATA, half of its message sent."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    reader = conn.makefile("rb")
    assert reader.readline().startswith(b"220")
    conn.sendall(b"HELO client.test\r\n")
    assert reader.readline().startswith(b"250")
    for command in (b"MAIL FROM:<alice@example.com>", b"RCPT TO:<bob@example.net>", b"DATA"):
        conn.sendall(command + b"\r\n")
        assert reader.readline()[:3] in (b"250", b"354")
    conn.sendall(b"From: alice@example.com\r\nSubject: in flight\r\n\r\nfirst half\r\n")
    return conn


def finish_data(conn: socket.socket) -> bytes:
    with conn, conn.makefile("rb") as reader:
        conn.sendall(b"second half\r\n.\r\n")
        return reader.readline()


def test_sigterm_drains_and_stops_every_process(relay: Relay) -> None:
    family = descendants(relay.proc.pid)
    assert len(family) >= TRACKING_WORKERS - 1 + SMTP_WORKERS - 1 + 1  # workers, delivery
    sessions = [open_data(relay.ports["smtp"]) for _ in range(16)]
    holding = listeners(relay.ports["smtp"], family | {relay.proc.pid}, ESTABLISHED)
    assert len(holding) == SMTP_WORKERS  # sessions in flight in every SMTP process
    relay.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: not relay_listeners(relay, "smtp"))  # no new sessions
    assert [finish_data(conn)[:3] for conn in sessions] == [b"250"] * len(sessions)
    assert relay.proc.wait(timeout=60) == 0
    wait_until(lambda: not any(alive(pid) for pid in family), timeout=10)
    for role in ("tracking", "smtp"):
        with socket.socket() as probe, pytest.raises(OSError):
            probe.connect(("127.0.0.1", relay.ports[role]))


def test_a_relay_killed_with_sigkill_leaves_no_worker(tmp_path: Path) -> None:
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    proc = spawn_relay(write_toml(tmp_path, free_port(), ports, 2, 2))
    try:
        wait_for_port(ports["admin"], proc)
        family = descendants(proc.pid)
        assert len(listeners(ports["tracking"], family)) == 1
    finally:
        proc.kill()
        proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in family), timeout=20)


def test_a_port_held_by_another_program_stops_the_start(tmp_path: Path) -> None:
    """SO_REUSEPORT would let the relay share a port its user holds elsewhere: it checks."""
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    config = write_toml(tmp_path, free_port(), ports, 2, 1)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", ports["tracking"]))
        holder.listen()
        proc = spawn_relay(config)
        _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert lines[-1].startswith(
        f"relay: tracking.listen: cannot listen on 127.0.0.1:{ports['tracking']}"
    )
    assert not any(line.startswith("Traceback") for line in lines)
