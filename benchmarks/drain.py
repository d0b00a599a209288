"""Draining a queue with 1 and with 2 delivery workers, on each store backend.

The queue is filled once per backend: `relay smtp` spools the reference message
(24 KB of HTML, 20 links, 2 recipients, so 2 copies each) while its upstream
hangs, and is stopped. Each run then starts from a copy of that store (SQLite:
the file; PostgreSQL: a database made from it as a template), starts `relay
smtp` with `upstream.delivery_workers = N` against Postfix's smtp-sink, and times
the drain from the first copy the sink gets to the last (process start-up is not
counted). The two worker counts run back to back, in --rounds rounds (1 worker,
then 2, then 1 again...); each round gives a ratio of two runs seconds apart, and
the median of those ratios is what counts on a shared, noisy machine (single
drains here move by up to 1.7x from one run to the next).

Each drain also reports how many of the machine's cores were busy meanwhile
(/proc/stat, every process: the relay, the sink, the database server), and each
backend its ceiling on this machine: its cores over the cores busy with one
worker. Two workers cannot go faster than that without spending less CPU per
copy than one does, so on a machine that runs the sink (and the server) on the
workers' cores, the ceiling, not the relay, may be what stops the ratio.

    .venv/bin/python benchmarks/drain.py [--messages 5000] [--rounds 3] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from smtp_load import (
    RECIPIENTS_PER_MESSAGE,
    free_port,
    load,
    private_postgres,
    relay_config,
    running_relay,
    start_sink,
)

# While the queue fills, the hung upstream must not time out; a copy in flight to it
# when the relay stops is given back (its lease released), so the queue is whole.
FILL_UPSTREAM = 'timeout = "30m"\nretry_schedule = ["1s"]\n'
# flow_delay off: the queue fills as fast as the relay spools (nothing delivers).
NO_FLOW_DELAY = 'flow_delay = "0s"\n'


def fill(home: Path, store: str, messages: int) -> None:
    """Spool `messages` with the upstream hung; the relay is stopped afterwards."""
    hung_port, smtp_port = free_port(), free_port()
    hung = socket.socket()
    hung.bind(("127.0.0.1", hung_port))
    hung.listen(64)
    config = relay_config(
        home, hung_port, store, {"smtp": smtp_port}, smtp=NO_FLOW_DELAY, upstream=FILL_UPSTREAM
    )
    try:
        with running_relay(config):
            load(smtp_port, messages, 8)
    finally:
        hung.close()


class BusyCores:
    """The machine's CPU (/proc/stat's first line) sampled every 20 ms by a thread, so the
    cores busy over any stretch of the run can be read afterwards."""

    def __init__(self) -> None:
        self._samples: list[tuple[float, int, int]] = []  # (time, busy ticks, all ticks)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            with open("/proc/stat") as stat:
                ticks = [int(n) for n in stat.readline().split()[1:9]]
            idle = ticks[3] + ticks[4] + ticks[7]  # idle, iowait, steal (another VM's)
            self._samples.append((time.time(), sum(ticks) - idle, sum(ticks)))
            self._done.wait(0.02)

    def between(self, start: float, end: float) -> float:
        """Cores busy on average from start to end (wall-clock times)."""
        self._done.set()
        self._thread.join()
        inside = [s for s in self._samples if start <= s[0] <= end] or self._samples[-2:]
        first, last = inside[0], inside[-1]
        share = (last[1] - first[1]) / max(1, last[2] - first[2])
        return share * (os.cpu_count() or 1)


def drain(home: Path, store: str, copies: int, workers: int) -> tuple[float, float]:
    """Seconds from the sink's first copy to its last, with `workers` delivery processes,
    and the cores busy meanwhile."""
    sink_port = free_port()
    sink = start_sink(sink_port, copies)
    workers_line = f"delivery_workers = {workers}\n"
    config = relay_config(home, sink_port, store, smtp=NO_FLOW_DELAY, upstream=workers_line)
    busy = BusyCores()
    try:
        with running_relay(config):
            done = sink.done_at()
            first = sink.first_at
    finally:
        sink.stop()
    assert first is not None
    return done - first, busy.between(first, done)


Rounds = list[dict[int, tuple[float, float]]]  # per round: workers -> (seconds, busy cores)


def run_rounds(
    backend: str,
    workdir: Path,
    messages: int,
    rounds: int,
    filled: str,
    fresh: Callable[[Path, str], str],
) -> Rounds:
    """Fill the store `filled` (a [store] line) once; then, in each round, drain a copy of
    it with 1 worker and with 2. fresh(home, name) makes the copy called `name`, its files
    in home, and returns its [store] line."""
    fill_home = workdir / f"{backend}-filled"
    fill_home.mkdir()
    fill(fill_home, filled, messages)
    copies = messages * RECIPIENTS_PER_MESSAGE
    results: Rounds = []
    for n in range(rounds):
        results.append({})
        for workers in (1, 2):
            home = workdir / f"{backend}-{n}-{workers}"
            home.mkdir()
            seconds, busy = drain(home, fresh(home, f"run{n}_{workers}"), copies, workers)
            results[n][workers] = report(seconds, busy, backend, workers, copies)
    return results


def run_sqlite(workdir: Path, messages: int, rounds: int) -> Rounds:
    filled = workdir / "sqlite-filled" / "relay.db"

    def fresh(home: Path, _name: str) -> str:
        shutil.copy(filled, home / "relay.db")
        return f'path = "{home / "relay.db"}"'

    return run_rounds("sqlite", workdir, messages, rounds, f'path = "{filled}"', fresh)


def run_postgres(workdir: Path, messages: int, rounds: int) -> Rounds:
    with private_postgres("filled") as (server, url):

        def fresh(_home: Path, name: str) -> str:
            with server.connect() as conn:
                conn.execute(f"CREATE DATABASE {name} TEMPLATE filled")
            return f'url = "{server.url(name)}"'

        return run_rounds("postgres", workdir, messages, rounds, f'url = "{url}"', fresh)


def report(
    seconds: float, busy: float, backend: str, workers: int, copies: int
) -> tuple[float, float]:
    print(
        f"{backend:>8}, {workers} worker(s): {copies} copies in {seconds:.2f}s"
        f" = {copies / seconds:.0f} copies/s; {busy:.2f} of {os.cpu_count()} cores busy",
        flush=True,
    )
    return seconds, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    runs = {"sqlite": run_sqlite, "postgres": run_postgres}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            started = time.monotonic()
            results = runs[backend](Path(tmp), args.messages, max(1, args.rounds))
            ratios = [r[1][0] / r[2][0] for r in results]
            shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            cores = os.cpu_count() or 1
            one = statistics.median(r[1][1] for r in results)
            print(
                f"{backend:>8}: 2 workers / 1 worker = {statistics.median(ratios):.2f}x,"
                f" the median of {len(ratios)} rounds ({shown}) (target >= 1.6);"
                f" ceiling on this machine {cores / one:.2f}x ({cores} cores / {one:.2f}"
                f" busy with 1 worker); run took {time.monotonic() - started:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
