"""How the relay grows: CPU per message and per pixel, measured per process, and a projection.

For each store (SQLite; a private PostgreSQL from Debian's package, fsync on) the
same two loads run, and the CPU time every process used is read from /proc before
and after (user + system, so the figure is the work done, whatever else the
shared machine is doing):

- mail: `relay smtp` (its SMTP front and one delivery process) takes --messages
  of the 24 KB reference message to 2 recipients from Postfix's smtp-source and
  delivers the copies to smtp-sink: CPU per message of the front, per copy of the
  delivery process, and per message of the database server (PostgreSQL);
- pixels: `relay http` answers --seconds of wrk's pixel requests: CPU per pixel
  of the HTTP process with its event writer, and of the database server.

From those it projects messages and pixels a second for 2, 8 and 32 cores on one
node, and for 1, 2 and 4 nodes of 8 cores sharing one PostgreSQL (on a host of its
own with as many cores as a node), naming what runs out first. SQLite's store is
one file on one host whose writes take turns (measured: a second delivery process
or tracking process adds no throughput), so its ceiling is the rate measured here,
whatever the cores; it cannot be shared by nodes.

    .venv/bin/python benchmarks/scaling.py [--messages 1500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pixel import at, at_url, prepare_store, store_toml, wrk
from smtp_load import (
    RECIPIENTS_PER_MESSAGE,
    free_port,
    load,
    private_postgres,
    relay_config,
    spawn,
    start_sink,
    wait_port,
)

from relay.core.config import StoreConfig

TICKS = os.sysconf("SC_CLK_TCK")
NIC_BYTES = 125e6  # a 1 Gb/s network interface per node, in bytes a second
MAIL_BYTES = 24_000 * (1 + RECIPIENTS_PER_MESSAGE) * 1.1  # in once, out per copy, + SMTP
CORES = (2, 8, 32)
NODES = (1, 2, 4)
NODE_CORES = 8


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def children(pid: int) -> list[int]:
    """Every descendant of pid (its delivery and event writer processes)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rpartition(")")[2].split()
                except OSError:
                    continue
                if int(stat[1]) == parent:
                    found.append(int(entry.name))
                    todo.append(int(entry.name))
    return found


def postgres_pids(port: int) -> list[int]:
    """The private server's postmaster and its backends (found by the port it listens on)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    masters = [int(line.split()[0]) for line in out.splitlines() if f"-p {port} " in line]
    return [p for m in masters for p in (m, *children(m))]


@dataclass
class Usage:
    """CPU seconds of a set of processes over one load."""

    before: dict[int, float]

    @classmethod
    def start(cls, pids: list[int]) -> Usage:
        return cls({pid: cpu_seconds(pid) for pid in pids})

    def spent(self, pids: list[int]) -> float:
        return sum(cpu_seconds(pid) - self.before.get(pid, 0.0) for pid in pids)


# [tracking] as pixel.py's relay runs have it.
TRACKING = 'trusted_proxies = ["127.0.0.1/32"]\nmax_connections = 8192\n'


def measure(store: StoreConfig, db_port: int | None, args: argparse.Namespace) -> dict[str, float]:
    """CPU ms per unit: front/msg, delivery/copy, db/msg, http/pixel, db/pixel; and rates."""
    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ports = {name: free_port() for name in ("smtp", "tracking", "admin")}
        sink_port = free_port()
        config = relay_config(home, sink_port, store_toml(store), ports, tracking=TRACKING)
        copies = args.messages * RECIPIENTS_PER_MESSAGE
        sink = start_sink(sink_port, copies)
        smtp = spawn([sys.executable, "-m", "relay", "smtp", "--config", str(config)], home)
        try:
            wait_port(ports["smtp"])
            time.sleep(1.0)  # the delivery process starts
            delivery = children(smtp.pid)
            db = postgres_pids(db_port) if db_port else []
            usage = Usage.start([smtp.pid, *delivery, *db])
            started, _ = load(ports["smtp"], args.messages, 8)
            done = sink.done_at()
            db = postgres_pids(db_port) if db_port else []
            found["front_ms"] = 1000 * usage.spent([smtp.pid]) / args.messages
            found["delivery_ms"] = 1000 * usage.spent(delivery) / copies
            found["db_mail_ms"] = 1000 * usage.spent(db) / args.messages
            found["msgs_s"] = args.messages / (done - started)
        finally:
            smtp.terminate()
            smtp.wait(timeout=60)
            sink.stop()
        token, _ = asyncio.run(prepare_store(store))
        http = spawn([sys.executable, "-m", "relay", "http", "--config", str(config)], home)
        try:
            wait_port(ports["tracking"])
            time.sleep(1.0)  # the event writer process starts
            own = [http.pid, *children(http.pid)]
            db = postgres_pids(db_port) if db_port else []
            usage = Usage.start([*own, *db])
            url = f"http://127.0.0.1:{ports['tracking']}/o/{token}.gif"
            rate, _, answered = wrk(url, 50, args.seconds)
            db = postgres_pids(db_port) if db_port else []
            found["http_ms"] = 1000 * usage.spent(own) / answered
            found["db_pixel_ms"] = 1000 * usage.spent(db) / answered
            found["pixels_s"] = rate
        finally:
            http.terminate()
            http.wait(timeout=60)
    return found


def project(name: str, m: dict[str, float]) -> None:
    per_msg = m["front_ms"] + RECIPIENTS_PER_MESSAGE * m["delivery_ms"]  # relay CPU ms
    print(f"\n{name}: projection (msgs/s of 2 copies; pixels/s)")
    print(f"  {'size':<26}{'msgs/s':>9}  {'limited by':<34}{'pixels/s':>10}  limited by")
    if name == "sqlite":
        for cores in CORES:
            msgs = min(1000 * cores / per_msg, m["msgs_s"])
            pixels = min(1000 * cores / m["http_ms"], m["pixels_s"])
            why_m = "relay CPU" if msgs < m["msgs_s"] else "the SQLite file (rate measured)"
            why_p = "relay CPU" if pixels < m["pixels_s"] else "the SQLite file (rate measured)"
            print(
                f"  {f'1 node, {cores} cores':<26}{msgs:>9.0f}  {why_m:<34}{pixels:>10.0f}  {why_p}"
            )
        print("  several nodes: not possible (one file on one host): use PostgreSQL")
        return
    sizes = [(1, cores, cores) for cores in CORES]
    sizes += [(n, NODE_CORES, NODE_CORES) for n in NODES if n > 1]
    for nodes, cores, db_cores in sizes:
        relay_msgs = 1000 * nodes * cores / per_msg
        db_msgs = 1000 * db_cores / m["db_mail_ms"]
        net_msgs = nodes * NIC_BYTES / MAIL_BYTES
        msgs, why_m = min(
            (relay_msgs, "relay CPU (front + delivery)"),
            (db_msgs, f"PostgreSQL CPU ({db_cores} cores)"),
            (net_msgs, "the network (1 Gb/s per node)"),
        )
        relay_px = 1000 * nodes * cores / m["http_ms"]
        db_px = 1000 * db_cores / m["db_pixel_ms"]
        pixels, why_p = min((relay_px, "relay CPU (HTTP)"), (db_px, "PostgreSQL CPU"))
        size = f"{nodes} node{'s' if nodes > 1 else ''}, {cores} cores"
        print(f"  {size:<26}{msgs:>9.0f}  {why_m:<34}{pixels:>10.0f}  {why_p}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(at(Path(tmp) / "relay.db"), None, args)
    with private_postgres("scaling") as (server, url):
        results["postgres"] = measure(at_url(url), server.port, args)
    print("CPU ms per unit (this machine), and the rates measured on its 2 cores:")
    print(f"  {'':<10}{'front/msg':>10}{'delivery/copy':>15}{'db/msg':>8}"
          f"{'http/pixel':>12}{'db/pixel':>10}{'msgs/s':>8}{'pixels/s':>10}")  # fmt: skip
    for name, m in results.items():
        print(
            f"  {name:<10}{m['front_ms']:>10.2f}{m['delivery_ms']:>15.2f}{m['db_mail_ms']:>8.2f}"
            f"{m['http_ms']:>12.3f}{m['db_pixel_ms']:>10.3f}{m['msgs_s']:>8.0f}"
            f"{m['pixels_s']:>10.0f}"
        )
    for name, m in results.items():
        project(name, m)


if __name__ == "__main__":
    main()
