"""Sustained load: mail and pixels at once for N minutes against `relay serve`.

Postfix's smtp-source sends the 24 KB reference message to 2 recipients over
``--sessions`` connections, in batches, for the whole run, while wrk loads the
pixel of an earlier message with ``--pixel-connections`` connections (restarted
every minute, so each minute's answered requests are known). The relay delivers
into Postfix's smtp-sink. Every minute it prints the RSS of every process of the
relay (the front, the delivery process, the event writer), the queue depth, the
oldest waiting copy, the flow-control delay, messages accepted and refused (452),
and pixels answered and stored. At the end: the time the queue took to drain,
whether every accepted message was delivered (the sink's count) and every
answered pixel stored, and the store's bytes per delivered message. The
baseline is the same store with every body kept (what the relay did before).

    .venv/bin/python benchmarks/soak.py [--minutes 2] [--sessions 4] [--pixel-connections 10]
        [--max-queued-copies 100000] [--upstream-connections 10] [--flow-delay 1s]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from pixel import UA_HEADER, at, prepare_store
from smtp_load import (
    RECIPIENTS_PER_MESSAGE,
    free_port,
    reference_message,
    relay_config,
    require,
    source_command,
    spawn,
    start_sink,
    wait_port,
)

SAMPLE_SECONDS = 2.0
BATCH = 2000  # messages per smtp-source run (it stops at a 452: the next batch goes on)
# B-trees that hold events (the table, its indexes, the hourly rollup).
EVENT_TREES = "name LIKE 'event%'"
QUEUE_FULL = 'relay_messages_refused_total{reason="queue_full"}'


def write_config(home: Path, ports: dict[str, int], args: argparse.Namespace) -> Path:
    smtp = f'max_queued_copies = {args.max_queued_copies}\nflow_delay = "{args.flow_delay}"\n'
    upstream = f"max_connections = {args.upstream_connections}\n"
    store = f'path = "{home / "relay.db"}"'
    return relay_config(home, ports["sink"], store, ports, smtp=smtp, upstream=upstream)


def process_tree(pid: int) -> dict[int, str]:
    """pid -> a short name, for the process and its descendants (from /proc)."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            cmdline = Path(f"/proc/{current}/cmdline").read_bytes().split(b"\0")
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        words = [w.decode() for w in cmdline if w]
        role = (
            "event writer"
            if "-c" in words
            else next((w for w in ("serve", "deliver") if w in words), words[0] if words else "?")
        )
        found[current] = {"serve": "relay serve", "deliver": "delivery process"}.get(role, role)
        todo.extend(int(c) for c in children)
    return found


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def scrape(admin_port: int) -> dict[str, float]:
    """The relay's /metrics, as name{labels} -> value."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[key] = float(value)
    return values


def queued(metrics: dict[str, float]) -> int:
    return int(
        metrics.get('relay_queue_copies{state="queued"}', 0)
        + metrics.get('relay_queue_copies{state="deferred"}', 0)
    )


def events_stored(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    conn.close()
    return int(row[0])


class MailLoad(threading.Thread):
    """smtp-source in batches until told to stop; counts batches cut short by a 452."""

    def __init__(self, port: int, sessions: int, message: Path) -> None:
        super().__init__(daemon=True)
        self.port, self.sessions, self.message = port, sessions, message
        self.stopping = threading.Event()
        self.refusals = 0
        self.proc: subprocess.Popen[str] | None = None

    def run(self) -> None:
        while not self.stopping.is_set():
            command = source_command(self.port, str(self.message), BATCH, self.sessions)
            self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _out, err = self.proc.communicate()
            if b"452" in err:
                self.refusals += 1
                time.sleep(1)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # a message cut short gets no 250, so it is not counted
        self.join()


def run_wrk(url: str, connections: int, seconds: int) -> int:
    """Requests answered by the relay in `seconds` (a failed answer stops the benchmark)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-H", UA_HEADER, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise SystemExit(f"wrk: failed answers\n{out}")
    match = re.search(r"(\d+) requests in", out)
    assert match is not None
    return int(match.group(1))


def store_bytes(db: Path) -> dict[str, int]:
    """Bytes of the file, of free pages, of event b-trees and of everything else; the
    raw bytes the bodies take now, and would take had every body been kept."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        events = conn.execute(f"SELECT sum(pgsize) FROM dbstat WHERE {EVENT_TREES}").fetchone()
        held, kept = conn.execute("SELECT sum(length(raw)), sum(size) FROM messages").fetchone()
        delivered = conn.execute("SELECT count(*) FROM copies WHERE state = 'delivered'")
        trees = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 12"
        ).fetchall()
        copies = int(delivered.fetchone()[0])
    conn.close()
    for name, size in trees:
        print(f"  {name:<28} {size / 1e6:8.2f} MB")
    return {
        "file": pages * page,
        "free": free * page,
        "events": int(events[0] or 0),
        "bodies_now": int(held or 0),
        "bodies_all": int(kept or 0),
        "delivered_copies": copies - 1,  # the pixel's message has one
    }


class Sampler(threading.Thread):
    """Scrapes /metrics every SAMPLE_SECONDS: the queue and the delay over each minute."""

    def __init__(self, admin_port: int) -> None:
        super().__init__(daemon=True)
        self.admin_port = admin_port
        self.samples: list[tuple[int, float, float]] = []  # (queue, delay s, oldest s)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_SECONDS):
            metrics = scrape(self.admin_port)
            self.samples.append(
                (
                    queued(metrics),
                    metrics.get("relay_smtp_flow_delay_seconds", 0.0),
                    metrics.get("relay_queue_oldest_seconds", 0.0),
                )
            )

    def minute(self) -> list[tuple[int, float, float]]:
        taken, self.samples = self.samples, []
        return taken or [(0, 0.0, 0.0)]


def minute_line(minute: int, tree: dict[int, str], metrics: dict[str, float], **more: Any) -> str:
    short = {"relay serve": "front", "delivery process": "delivery", "event writer": "writer"}
    rss = "  ".join(f"{short.get(name, name)} {rss_mb(pid):.0f}" for pid, name in tree.items())
    samples: list[tuple[int, float, float]] = more["samples"]
    depths, delays = [q for q, _, _ in samples], [d for _, d, _ in samples]
    return (
        f"{minute:>3}  RSS MB: {rss}  queue {queued(metrics)} (max {max(depths)})"
        f"  oldest {max(o for _, _, o in samples):.1f}s"
        f"  delay ms mean {sum(delays) / len(delays) * 1000:.0f} max {max(delays) * 1000:.0f}"
        f"  accepted {int(metrics.get('relay_messages_accepted_total', 0))}"
        f"  452 {int(metrics.get(QUEUE_FULL, 0))}"
        f"  pixels answered {more['answered']} stored {more['stored']}"
    )


def spooled(db: Path) -> tuple[int, int]:
    """(messages, copies) in the store, the pixel's message apart: what was stored,
    including a message whose client was cut off before its 250 at the end."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        messages = int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        copies = int(conn.execute("SELECT count(*) FROM copies").fetchone()[0])
    conn.close()
    return messages - 1, copies - 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--pixel-connections", type=int, default=10)
    parser.add_argument("--max-queued-copies", type=int, default=100_000)
    # Fewer upstream connections: delivery slower than acceptance, to see flow control.
    parser.add_argument("--upstream-connections", type=int, default=10)
    parser.add_argument("--flow-delay", default="1s", help='smtp.flow_delay; "0": none')
    args = parser.parse_args()
    require("smtp-source", "smtp-sink")
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        db = home / "relay.db"
        token, _copy = asyncio.run(prepare_store(at(db)))
        ports = {name: free_port() for name in ("smtp", "sink", "tracking", "admin")}
        sink = start_sink(ports["sink"], 10**9)
        config = write_config(home, ports, args)
        relay = spawn([sys.executable, "-m", "relay", "serve", "--config", str(config),
                       "--log-level", "WARNING"], home)  # fmt: skip
        message = home / "reference.eml"
        message.write_bytes(reference_message().replace(b"\r\n", b"\n"))
        try:
            wait_port(ports["smtp"])
            wait_port(ports["tracking"])
            time.sleep(1)
            tree = process_tree(relay.pid)
            print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
            print("processes: " + ", ".join(f"{pid} {name}" for pid, name in tree.items()))
            mail = MailLoad(ports["smtp"], args.sessions, message)
            sampler = Sampler(ports["admin"])
            mail.start()
            sampler.start()
            pixel_url = f"http://127.0.0.1:{ports['tracking']}/o/{token}.gif"
            answered_total, first_rss = 0, {}
            for minute in range(1, args.minutes + 1):
                answered = run_wrk(pixel_url, args.pixel_connections, 60)
                answered_total += answered
                metrics = scrape(ports["admin"])
                tree = process_tree(relay.pid)
                if minute == 1:
                    first_rss = {pid: rss_mb(pid) for pid in tree}
                stored = events_stored(db)
                line = minute_line(
                    minute, tree, metrics, answered=answered, stored=stored,
                    samples=sampler.minute(),
                )  # fmt: skip
                print(line, flush=True)
            mail.stop()
            ended = time.monotonic()
            sampler.stopping.set()
            print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[:3]}")
            last_rss = {pid: rss_mb(pid) for pid in tree}
            while queued(metrics := scrape(ports["admin"])) > 0:
                time.sleep(0.2)
            drain = time.monotonic() - ended
            answered_250 = int(metrics["relay_messages_accepted_total"])
            accepted, expected = spooled(db)
            deadline = time.monotonic() + 30
            while sink.count < expected and time.monotonic() < deadline:
                time.sleep(0.2)
            stored_total = events_stored(db)
            copies = sink.count
            refused = int(metrics[QUEUE_FULL])
            print(f"drain: the queue was empty {drain:.1f}s after the load stopped")
            print(
                f"mail: {accepted} messages stored ({answered_250} answered 250; the others' "
                f"clients were cut off at the end), {sink.count} of {expected} copies in the "
                f"sink, {refused} refused with 452 ({mail.refusals} smtp-source runs cut short)"
            )
            print(f"pixels: {answered_total} answered, {stored_total} stored")
            for pid, name in tree.items():
                first, last = first_rss.get(pid, 0.0), last_rss.get(pid, 0.0)
                change = (last / first - 1) * 100 if first else 0.0
                print(f"rss {name}: {first:.0f} MB after minute 1, {last:.0f} MB at the end "
                      f"({change:+.0f}%)")  # fmt: skip
            time.sleep(1)
        finally:
            relay.terminate()
            relay.wait(timeout=60)
            sink.stop()
        size = store_bytes(db)
        delivered = max(1, accepted)
        rest = size["file"] - size["free"] - size["events"]
        print(
            f"store: {size['file'] / 1e6:.1f} MB file ({size['free'] / 1e6:.1f} MB free pages),"
            f" of which {size['events'] / 1e6:.1f} MB events ({stored_total} events,"
            f" {size['events'] / max(1, stored_total):.0f} B each)"
        )
        print(
            f"store per delivered message, events included: {size['file'] / delivered:.0f} B"
            f" ({(size['file'] - size['free']) / delivered:.0f} B without the free pages;"
            f" {stored_total / delivered:.1f} pixel events per message)"
        )
        print(f"copies delivered in the store: {size['delivered_copies']}, in the sink: {copies}")
        assert RECIPIENTS_PER_MESSAGE * accepted == expected
        print(
            f"store per delivered message: {rest / delivered:.0f} B without events"
            f" ({(size['file'] - size['events']) / delivered:.0f} B with the free pages);"
            f" bodies still held: {size['bodies_now'] / 1e6:.1f} MB"
        )
        kept_all = rest + size["bodies_all"] - size["bodies_now"]
        print(f"baseline (every body kept): {kept_all / delivered:.0f} B per delivered message")
        lost_mail = expected - sink.count
        lost_pixels = answered_total - stored_total
        if lost_mail > 0 or lost_pixels > 0:
            print(f"LOST: {max(0, lost_mail)} copies, {max(0, lost_pixels)} pixels")
            raise SystemExit(1)


if __name__ == "__main__":
    main()
