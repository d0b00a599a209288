"""The load generator, the sink and the process plumbing shared by the SMTP benchmarks.

Every server under test gets the same load (aiosmtplib, N concurrent connections,
the 24 KB reference message to 2 recipients) and relays into the same kind of
sink: a separate process that counts delivered recipients and prints the time
the expected count was reached.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
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


def start_sink(port: int, expected: int, workdir: Path) -> subprocess.Popen[str]:
    """A counting sink on `port`, ready when this returns."""
    sink = spawn([sys.executable, "-c", SINK, str(port), str(expected)], workdir)
    assert sink.stdout is not None
    sink.stdout.readline()
    return sink


def sink_done_at(sink: subprocess.Popen[str]) -> float:
    """Blocks until the sink has counted every expected recipient; its wall-clock time then."""
    assert sink.stdout is not None
    line = sink.stdout.readline().split()
    if not line:
        raise SystemExit("the sink exited before every copy arrived")
    return float(line[1])


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=60)


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


async def drive(port: int, message: bytes, count: int, concurrency: int) -> tuple[float, float]:
    """Send count messages over concurrency connections; (start, end) wall-clock times,
    end being when the last one got its 250."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def connection() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=120)
        await client.connect()
        while not queue.empty():
            queue.get_nowait()
            await client.sendmail("alice@example.com", RECIPIENTS, message)
        await client.quit()

    started = time.time()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return started, time.time()


def load(port: int, messages: int, concurrency: int) -> tuple[float, float]:
    """The standard load against `port`, once it listens."""
    wait_port(port)
    return asyncio.run(drive(port, reference_message(), messages, concurrency))
