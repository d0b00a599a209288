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

    .venv/bin/python benchmarks/drain.py [--messages 5000] [--rounds 3] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
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


def drain(home: Path, store: str, copies: int, workers: int) -> float:
    """Seconds from the sink's first copy to its last, with `workers` delivery processes."""
    sink_port = free_port()
    sink = start_sink(sink_port, copies)
    workers_line = f"delivery_workers = {workers}\n"
    config = relay_config(home, sink_port, store, smtp=NO_FLOW_DELAY, upstream=workers_line)
    try:
        with running_relay(config):
            done = sink.done_at()
            first = sink.first_at
    finally:
        sink.stop()
    assert first is not None
    return done - first


Rounds = list[dict[int, float]]  # per round: workers -> seconds


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
            seconds = drain(home, fresh(home, f"run{n}_{workers}"), copies, workers)
            results[n][workers] = report(seconds, backend, workers, copies)
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


def report(seconds: float, backend: str, workers: int, copies: int) -> float:
    print(
        f"{backend:>8}, {workers} worker(s): {copies} copies in {seconds:.2f}s"
        f" = {copies / seconds:.0f} copies/s",
        flush=True,
    )
    return seconds


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
            ratios = [r[1] / r[2] for r in results]
            shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
            print(
                f"{backend:>8}: 2 workers / 1 worker = {statistics.median(ratios):.2f}x,"
                f" the median of {len(ratios)} rounds ({shown}) (target >= 1.6);"
                f" run took {time.monotonic() - started:.0f}s",
                flush=True,
            )


if __name__ == "__main__":
    main()
