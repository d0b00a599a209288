"""Messages per second through the relay, against a naive pass-through proxy.

Both run as separate processes in the same run, relay into the same kind of
sink (a separate process counting delivered recipients), and are driven by the
same load generator (aiosmtplib, N concurrent connections). The reference
message is 24 KB of HTML with 20 links, sent to 2 recipients; the relay spools
it with fsync, makes one rewritten copy per recipient and delivers both.

    .venv/bin/python benchmarks/relay_throughput.py [--messages 600] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

REPO = Path(__file__).resolve().parents[1]
RECIPIENTS = ["bob@example.net", "carol@example.org"]

SINK = r"""
import asyncio, sys, time
from aiosmtpd.smtp import SMTP

expected = int(sys.argv[2])
count = 0

class Sink:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += len(envelope.rcpt_tos)
        if count == expected:
            print(f"done {time.time()}", flush=True)
        return "250 2.0.0 Ok: queued as S" + str(count)

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), decode_data=False, data_size_limit=None), "127.0.0.1", int(sys.argv[1])
    )
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reference_message(links: int = 20, size: int = 24_000) -> bytes:
    """multipart/alternative: a text part and ~24 KB of HTML with `links` links."""
    anchors = "".join(
        f'<p><a href="https://shop.example.com/item/{i}?utm_source=mail&amp;id={i}">'
        f"Item number {i}</a></p>\r\n"
        for i in range(links)
    )
    filler_line = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing. " * 3 + "</p>\r\n"
    filler = filler_line * max(1, (size - len(anchors)) // len(filler_line))
    html = f"<html><body>\r\n{anchors}{filler}</body></html>\r\n"
    return (
        "From: Alice <alice@example.com>\r\nTo: bob@example.net, carol@example.org\r\n"
        "Subject: benchmark\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, see the shop.\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        f"{html}--b1--\r\n"
    ).encode()


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


async def drive(port: int, message: bytes, count: int, concurrency: int) -> float:
    """Send count messages over concurrency connections; return when all got 250."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
        await client.connect()
        while not queue.empty():
            queue.get_nowait()
            await client.sendmail("alice@example.com", RECIPIENTS, message)
        await client.quit()

    started = time.time()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return started


def run_one(
    name: str,
    front: list[str],
    front_port: int,
    sink_port: int,
    args: argparse.Namespace,
    workdir: Path,
) -> float:
    sink = spawn([sys.executable, "-c", SINK, str(sink_port), str(2 * args.messages)], workdir)
    assert sink.stdout is not None
    sink.stdout.readline()
    server = spawn(front, workdir)
    try:
        wait_port(front_port)
        started = asyncio.run(
            drive(front_port, reference_message(), args.messages, args.concurrency)
        )
        line = sink.stdout.readline().split()
        elapsed = float(line[1]) - started
        rate = args.messages / elapsed
        print(
            f"{name:>12}: {args.messages} messages x 2 recipients in {elapsed:.2f}s "
            f"= {rate:.0f} msgs/s"
        )
        return rate
    finally:
        for proc in (server, sink):
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sink_port, proxy_port = free_port(), free_port()
        baseline = run_one(
            "pass-through",
            [sys.executable, "-c", PROXY, str(proxy_port), str(sink_port)],
            proxy_port,
            sink_port,
            args,
            workdir,
        )
        sink_port, smtp_port = free_port(), free_port()
        config = workdir / "relay.toml"
        config.write_text(
            f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\n'
            f'[upstream]\nurl = "smtp://127.0.0.1:{sink_port}"\n'
            f'[tracking]\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[store]\npath = "{workdir / "relay.db"}"\n'
        )
        ours = run_one(
            "relay",
            [
                sys.executable,
                "-m",
                "relay",
                "smtp",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            smtp_port,
            sink_port,
            args,
            workdir,
        )
    print(f"ratio relay / pass-through: {ours / baseline:.2f} (target >= 0.6)")


if __name__ == "__main__":
    main()
