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
import contextlib
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from smtp_load import (
    RECIPIENTS_PER_MESSAGE,
    REPO,
    free_port,
    load,
    migrated,
    spawn,
    start_sink,
    stop,
)

sys.path.insert(0, str(REPO / "tests"))
from support.postgres import PostgresServer

# While the queue fills, the hung upstream must not time out; a copy in flight to it
# when the relay stops is given back (its lease released), so the queue is whole.
FILL_UPSTREAM = 'timeout = "30m"\nretry_schedule = ["1s"]\n'


def relay_config(home: Path, store: str, upstream_port: int, extra: str = "") -> Path:
    """flow_delay off: the queue fills as fast as the relay spools (nothing delivers)."""
    config = home / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\nflow_delay = "0s"\n'
        f'[upstream]\nurl = "smtp://127.0.0.1:{upstream_port}"\n{extra}'
        f'[tracking]\nlisten = "127.0.0.1:{free_port()}"\n'
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n'
        f"[store]\n{store}\n"
    )
    return config


def smtp_port(config: Path) -> int:
    text = config.read_text()
    return int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])


@contextlib.contextmanager
def relay(config: Path) -> Iterator[None]:
    args = ["smtp", "--config", str(config), "--log-level", "WARNING"]
    proc = spawn([sys.executable, "-m", "relay", *args], config.parent)
    try:
        yield
    finally:
        stop(proc)


def fill(home: Path, store: str, messages: int) -> None:
    """Spool `messages` with the upstream hung; the relay is stopped afterwards."""
    hung_port = free_port()
    hung = socket.socket()
    hung.bind(("127.0.0.1", hung_port))
    hung.listen(64)
    config = relay_config(home, store, hung_port, FILL_UPSTREAM)
    try:
        with relay(config):
            load(smtp_port(config), messages, 8)
    finally:
        hung.close()


def drain(home: Path, store: str, copies: int, workers: int) -> float:
    """Seconds from the sink's first copy to its last, with `workers` delivery processes."""
    sink_port = free_port()
    sink = start_sink(sink_port, copies)
    config = relay_config(home, store, sink_port, f"delivery_workers = {workers}\n")
    try:
        with relay(config):
            done = sink.done_at()
            first = sink.first_at
    finally:
        sink.stop()
    assert first is not None
    return done - first


Rounds = list[dict[int, float]]  # per round: workers -> seconds


def run_sqlite(workdir: Path, messages: int, rounds: int) -> Rounds:
    filled = workdir / "sqlite-filled"
    filled.mkdir()
    fill(filled, f'path = "{filled / "relay.db"}"', messages)
    results: Rounds = []
    for n in range(rounds):
        results.append({})
        for workers in (1, 2):
            home = workdir / f"sqlite-{n}-{workers}"
            home.mkdir()
            shutil.copy(filled / "relay.db", home / "relay.db")
            store = f'path = "{home / "relay.db"}"'
            copies = messages * RECIPIENTS_PER_MESSAGE
            results[n][workers] = report(
                drain(home, store, copies, workers), "sqlite", workers, copies
            )
    return results


def run_postgres(workdir: Path, messages: int, rounds: int) -> Rounds:
    server = PostgresServer()
    try:
        url = migrated(server.create_database("filled"))
        filled = workdir / "pg-filled"
        filled.mkdir()
        fill(filled, f'url = "{url}"', messages)
        results: Rounds = []
        for n in range(rounds):
            results.append({})
            for workers in (1, 2):
                home = workdir / f"pg-{n}-{workers}"
                home.mkdir()
                name = f"run{n}_{workers}"
                with server.connect() as conn:
                    conn.execute(f"CREATE DATABASE {name} TEMPLATE filled")
                copies = messages * RECIPIENTS_PER_MESSAGE
                seconds = drain(home, f'url = "{server.url(name)}"', copies, workers)
                results[n][workers] = report(seconds, "postgres", workers, copies)
    finally:
        server.stop()
    return results


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
