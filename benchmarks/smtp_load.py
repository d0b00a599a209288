"""The load generator, the sink and the process plumbing shared by the SMTP benchmarks.

Every server under test gets the same load and relays into the same sink, both
Postfix's own C test programs from Debian's postfix package, built for
measuring MTAs: ``smtp-source`` sends the 24 KB reference message to 2
recipients over N concurrent connections, ``smtp-sink`` accepts and discards
mail and prints a running count of completed transactions. Being C, neither
takes much of the CPU that the servers under test share with them (an
aiosmtpd sink spent 1.7 ms of CPU per 24 KB copy, more than the relay did).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from support.postgres import PostgresServer

REPO = Path(__file__).resolve().parents[1]
SENDER = "alice@example.com"
RECIPIENT = "bob@example.net"  # smtp-source -r 2 sends to 1bob@... and 2bob@...
RECIPIENTS_PER_MESSAGE = 2
SETTLE = 0.5  # seconds the sink must stay at its count: more copies than expected is an error


def require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} needed: apt-get install postfix")


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


def relay_config(
    home: Path,
    upstream_port: int,
    store: str,
    ports: dict[str, int] | None = None,
    *,
    smtp: str = "",
    upstream: str = "",
    tracking: str = "",
) -> Path:
    """home/relay.toml: the relay's listeners on loopback at `ports`' "smtp", "tracking"
    and "admin" (a free port for each one not given), its upstream at upstream_port,
    `store` the [store] table's line; `smtp`, `upstream` and `tracking` are more lines for
    those tables."""
    given = ports or {}
    port = {name: given.get(name) or free_port() for name in ("smtp", "tracking", "admin")}
    config = home / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port["smtp"]}"\n{smtp}'
        f'[upstream]\nurl = "smtp://127.0.0.1:{upstream_port}"\n{upstream}'
        f'[tracking]\nlisten = "127.0.0.1:{port["tracking"]}"\n{tracking}'
        f'[admin]\nlisten = "127.0.0.1:{port["admin"]}"\n'
        f"[store]\n{store}\n"
    )
    return config


@contextlib.contextmanager
def running_relay(config: Path) -> Iterator[None]:
    """`relay smtp` on `config` in its folder, logging warnings only; stopped on leaving."""
    args = ["smtp", "--config", str(config), "--log-level", "WARNING"]
    proc = spawn([sys.executable, "-m", "relay", *args], config.parent)
    try:
        yield
    finally:
        stop(proc)


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


class Sink:
    """smtp-sink on a port, its running count of transactions watched by a thread."""

    def __init__(self, port: int, expected: int) -> None:
        require("smtp-sink")
        self.expected = expected
        self.count = 0
        self.first_at: float | None = None  # when the first transaction completed
        self.reached_at: float | None = None
        self._reached = threading.Event()
        drop = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
        self._proc = subprocess.Popen(
            ["smtp-sink", "-c", *drop, f"127.0.0.1:{port}", "1024"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._reader = threading.Thread(target=self._watch, daemon=True)
        self._reader.start()
        wait_port(port)

    def _watch(self) -> None:
        """The counter line is rewritten after each transaction: "sess=N quit=N mesg=N\\r"."""
        assert self._proc.stdout is not None
        fd, tail = self._proc.stdout.fileno(), b""
        while chunk := os.read(fd, 65536):
            now = time.time()
            tail = (tail + chunk)[-256:]
            last = tail.rstrip(b"\r").rpartition(b"\r")[2]
            if b"mesg=" in last:
                self.count = int(last.rpartition(b"mesg=")[2])
                if self.count and self.first_at is None:
                    self.first_at = now
            if self.count >= self.expected and self.reached_at is None:
                self.reached_at = now
                self._reached.set()
        self._reached.set()

    def done_at(self, timeout: float = 600.0) -> float:
        """Wall-clock time the expected number of transactions was reached."""
        if not self._reached.wait(timeout) or self.reached_at is None:
            raise SystemExit(f"the sink got {self.count} of {self.expected} copies")
        time.sleep(SETTLE)
        if self.count != self.expected:
            raise SystemExit(f"the sink got {self.count} copies, expected {self.expected}")
        return self.reached_at

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=60)


def start_sink(port: int, expected: int) -> Sink:
    """A counting sink on `port` expecting `expected` transactions, ready when this returns."""
    return Sink(port, expected)


def stop(*procs: subprocess.Popen[str]) -> None:
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=60)


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Until something listens on ``port`` (a connect given ``port`` as its own source
    port reaches itself, not a listener: see tests/support/processes.wait_for_port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                if sock.getsockname() != sock.getpeername():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def source_command(port: int, message: str, messages: int, sessions: int) -> list[str]:
    """smtp-source sending the file `message` `messages` times over `sessions` connections,
    from SENDER to RECIPIENTS_PER_MESSAGE recipients each."""
    return [
        "smtp-source", "-F", message, "-m", str(messages), "-s", str(sessions),
        "-d", "-r", str(RECIPIENTS_PER_MESSAGE), "-f", SENDER, "-t", RECIPIENT,
        "-M", "localhost", f"127.0.0.1:{port}",
    ]  # fmt: skip


def load(port: int, messages: int, concurrency: int) -> tuple[float, float]:
    """The standard load against `port`, once it listens: (start, end) wall-clock times,
    end being when the last message got its 250 (smtp-source exits)."""
    require("smtp-source")
    wait_port(port)
    with tempfile.NamedTemporaryFile(suffix=".eml") as message:
        # smtp-source reads lines and sends each with CRLF itself.
        message.write(reference_message().replace(b"\r\n", b"\n"))
        message.flush()
        command = source_command(port, message.name, messages, concurrency)
        started = time.time()
        done = subprocess.run(command, capture_output=True, text=True)
        ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"smtp-source failed: {done.stdout}{done.stderr}".strip())
    return started, ended


def migrated(url: str) -> str:
    """``relay migrate`` run on a new PostgreSQL database (the benchmarks' private
    server): the schema a relay there needs. Returns the URL."""
    done = subprocess.run(
        [sys.executable, "-m", "relay", "migrate", "--store", url],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"relay migrate failed: {done.stderr.strip()}")
    return url


@contextlib.contextmanager
def private_postgres(database: str) -> Iterator[tuple[PostgresServer, str]]:
    """A private PostgreSQL (Debian's package, fsync on, on loopback:
    tests/support/postgres.py) with `database` made and migrated: (the server, the
    database's URL). The server is stopped on leaving."""
    sys.path.insert(0, str(REPO / "tests"))
    from support.postgres import PostgresServer

    server = PostgresServer()
    try:
        yield server, migrated(server.create_database(database))
    finally:
        server.stop()
