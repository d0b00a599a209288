"""Messages per second through the relay, against a naive pass-through proxy and Postfix.

All run as separate processes in the same run, relay into the same kind of sink
(Postfix's smtp-sink, counting transactions), and are driven by the same load
generator (Postfix's smtp-source, N concurrent connections; smtp_load.py). The
reference message is 24 KB of HTML with 20 links, sent to 2 recipients; the
relay spools it with fsync, makes one rewritten copy per recipient and delivers
both (in its delivery process, as configured by default; a last run keeps
delivery in the SMTP process, upstream.delivery_process = false). Postfix is
a private instance of Debian's package (tests/support/postfix.py)
relaying everything to the sink (`relayhost`), on its defaults otherwise.

Then the backlog: the relay's upstream hangs (it accepts TCP and never greets),
so messages are only spooled; that rate is reported, then the sink comes up on
the upstream's port and the time until every queued copy is delivered is timed.

    .venv/bin/python benchmarks/relay_throughput.py [--messages 600] [--concurrency 8]
        [--backlog-messages 5000]

With ``--backends [--rounds 3]`` it only compares a PostgreSQL store with SQLite's file,
in alternating rounds, and reports the median ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from smtp_load import (
    RECIPIENTS_PER_MESSAGE,
    REPO,
    free_port,
    load,
    private_postgres,
    relay_config,
    running_relay,
    spawn,
    start_sink,
    stop,
)

sys.path.insert(0, str(REPO / "tests"))
from support.postfix import running_postfix

PROXY = r"""
import asyncio, sys
import aiosmtplib
from aiosmtpd.smtp import SMTP

upstream = int(sys.argv[2])

class PassThrough:
    async def handle_DATA(self, server, session, envelope):
        await aiosmtplib.send(envelope.original_content, sender=envelope.mail_from,
                              recipients=envelope.rcpt_tos, hostname="127.0.0.1", port=upstream)
        return "250 2.0.0 Ok"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(PassThrough(), decode_data=False, data_size_limit=None),
        "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

# The backlog run: a hung upstream must not time out while the spool fills, and the
# few copies that were in flight to it when it comes back are retried after 1 s.
BACKLOG_UPSTREAM = 'timeout = "30m"\nretry_schedule = ["1s"]\n'

# (front port, sink port, work dir) -> the running server under test.
Front = Callable[[int, int, Path], AbstractContextManager[None]]
# Upstream transactions per message: the relay sends one copy per recipient, the
# pass-through and Postfix one transaction carrying both recipients.
PER_RECIPIENT = RECIPIENTS_PER_MESSAGE


@contextlib.contextmanager
def proxy_front(port: int, sink_port: int, workdir: Path) -> Iterator[None]:
    proc = spawn([sys.executable, "-c", PROXY, str(port), str(sink_port)], workdir)
    try:
        yield
    finally:
        stop(proc)


def relay_front(
    port: int, upstream_port: int, workdir: Path, upstream_extra: str = "", store: str = ""
) -> AbstractContextManager[None]:
    """`relay smtp` with its own store in a fresh directory under workdir (or `store`, a
    [store] line)."""
    home = Path(tempfile.mkdtemp(dir=workdir, prefix="relay-"))
    store = store or f'path = "{home / "relay.db"}"'
    config = relay_config(home, upstream_port, store, {"smtp": port}, upstream=upstream_extra)
    return running_relay(config)


def one_process_front(port: int, upstream_port: int, workdir: Path) -> AbstractContextManager[None]:
    """The relay with upstream.delivery_process = false: one process does everything."""
    return relay_front(port, upstream_port, workdir, "delivery_process = false\n")


@contextlib.contextmanager
def postfix_front(port: int, sink_port: int, workdir: Path) -> Iterator[None]:
    with running_postfix(port, f"[127.0.0.1]:{sink_port}", processes=100):
        yield


def measure(
    name: str, front: Front, args: argparse.Namespace, workdir: Path, per_message: int = 1
) -> float:
    """Messages per second from the first MAIL until the sink has every copy."""
    sink_port, front_port = free_port(), free_port()
    sink = start_sink(sink_port, per_message * args.messages)
    try:
        with front(front_port, sink_port, workdir):
            started, _ = load(front_port, args.messages, args.concurrency)
            elapsed = sink.done_at() - started
    finally:
        sink.stop()
    rate = args.messages / elapsed
    print(
        f"{name:>12}: {args.messages} messages x 2 recipients in {elapsed:.2f}s "
        f"= {rate:.0f} msgs/s",
        flush=True,
    )
    return rate


def backlog(args: argparse.Namespace, workdir: Path) -> None:
    """Spool with the upstream hung, then time the drain once the sink answers there."""
    upstream_port, smtp_port = free_port(), free_port()
    count = args.backlog_messages
    hung = socket.socket()
    hung.bind(("127.0.0.1", upstream_port))
    hung.listen(64)  # the kernel completes connections that no one ever greets
    with relay_front(smtp_port, upstream_port, workdir, BACKLOG_UPSTREAM):
        started, accepted = load(smtp_port, count, args.concurrency)
        hung.close()  # the copies in flight see a reset and are deferred
        back = time.time()
        sink = start_sink(upstream_port, PER_RECIPIENT * count)
        try:
            drained = sink.done_at() - back
        finally:
            sink.stop()
    spooled = accepted - started
    print(
        f"{'spool only':>12}: {count} messages x 2 recipients accepted in {spooled:.2f}s "
        f"= {count / spooled:.0f} msgs/s (upstream hung)"
    )
    print(
        f"{'drain':>12}: {2 * count} queued copies delivered {drained:.2f}s after the "
        f"upstream came back = {2 * count / drained:.0f} copies/s"
    )


def compare_backends(args: argparse.Namespace, workdir: Path) -> None:
    """The relay on SQLite, then on a private PostgreSQL (Debian's package, fsync on,
    loopback: tests/support/postgres.py), same load, back to back, in ``--rounds`` rounds:
    the ratio is the median of the rounds' (single runs on this shared machine moved by
    up to 2x)."""
    with private_postgres("throughput") as (_server, url):

        def on_postgres(port: int, upstream_port: int, work: Path) -> AbstractContextManager[None]:
            return relay_front(port, upstream_port, work, store=f'url = "{url}"')

        ratios = []
        for _ in range(max(1, args.rounds)):
            lite = measure("sqlite", relay_front, args, workdir, PER_RECIPIENT)
            pg = measure("postgres", on_postgres, args, workdir, PER_RECIPIENT)
            ratios.append(pg / lite)
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"ratio PostgreSQL / SQLite: {statistics.median(ratios):.2f}, the median of"
        f" {len(ratios)} rounds ({shown}) (target >= 0.8)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backlog-messages", type=int, default=5000)
    parser.add_argument(
        "--backends", action="store_true", help="only compare the PostgreSQL store with SQLite"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --backends")
    args = parser.parse_args()
    if args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            compare_backends(args, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        baseline = measure("pass-through", proxy_front, args, workdir)
        ours = measure("relay", relay_front, args, workdir, PER_RECIPIENT)
        postfix = measure("postfix", postfix_front, args, workdir)
        single = measure("relay, 1 proc", one_process_front, args, workdir, PER_RECIPIENT)
        print(f"ratio relay / pass-through: {ours / baseline:.2f} (target >= 0.6)")
        print(f"ratio relay / postfix: {ours / postfix:.2f} (target >= 1.0)")
        print(f"ratio delivery in the SMTP process / pass-through: {single / baseline:.2f}")
        if args.backlog_messages > 0:
            backlog(args, workdir)


if __name__ == "__main__":
    main()
