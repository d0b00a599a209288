"""Real processes and real servers for tests that cross process boundaries.

The relay runs as a subprocess (`python -m relay serve`), exactly as an
operator starts it; the upstream is an aiosmtpd sink on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

REPO = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "t0ken"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Until something listens on ``port``. free_port's ports come from the ephemeral
    range, so a connect to one that nobody listens on yet may be given that same port as
    its source and connect to itself (TCP's simultaneous open): that is not a listener
    (seen once in make test: the relay's port "answered", then refused the client)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"relay exited {proc.returncode}: {err.decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.getsockname() != sock.getpeername():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {timeout}s")


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SinkHandler:
    """Collects what the relay delivers upstream."""

    messages: list[Received] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.arrived:
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
            self.arrived.notify_all()
        return f"250 2.0.0 Ok: queued as SINK{len(self.messages)}"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)
        assert ok, f"expected {count} delivered messages, got {len(self.messages)}"
        return list(self.messages)


class LongLineSMTP(SMTP):
    """A sink that takes lines over 1000 octets, as real MTAs do and SPEC 4 relays."""

    line_length_limit = 1 << 20


class LongLineController(Controller):
    def factory(self) -> SMTP:
        return LongLineSMTP(self.handler, **self.SMTP_kwargs)


@contextlib.contextmanager
def running_sink(port: int | None = None) -> Iterator[tuple[SinkHandler, int]]:
    """An aiosmtpd sink on a loopback port (a free one by default), in its own thread."""
    handler = SinkHandler()
    port = free_port() if port is None else port
    controller = LongLineController(
        handler, hostname="127.0.0.1", port=port, decode_data=False, data_size_limit=0
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@dataclass
class RelayProcess:
    proc: subprocess.Popen[bytes]
    smtp_port: int
    tracking_port: int
    admin_port: int
    admin_token: str
    workdir: Path

    @property
    def tracking_url(self) -> str:
        return f"http://127.0.0.1:{self.tracking_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def relay_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "relay", *args]


def relay_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


RELAY_TOML_TEMPLATE = """
[smtp]
listen = "127.0.0.1:{{smtp}}"
hostname = "relay.test"
{smtp}
[upstream]
url = "{url}"
{upstream}
[tracking]
base_url = "http://127.0.0.1:{{tracking}}"
listen = "127.0.0.1:{{tracking}}"
# The tests' short HTML would get no pixel otherwise (test_deliverability.py covers that).
avoid_image_only = false
{tracking}
[admin]
listen = "127.0.0.1:{{admin}}"
token = "{token}"

[store]
path = "relay.db"
"""


def relay_toml(url: str, *, smtp: str = "", upstream: str = "", tracking: str = "") -> str:
    """relay.toml text for start_relay: loopback listeners on its {smtp}, {tracking} and
    {admin} placeholders, its admin token, the store in the working directory, and
    `url` as the upstream. `smtp`, `upstream` and `tracking` are extra lines for those tables.
    """
    return RELAY_TOML_TEMPLATE.format(
        url=url, smtp=smtp, upstream=upstream, tracking=tracking, token=ADMIN_TOKEN
    )


async def run_relay(
    *args: str, cwd: Path | None = None, seconds: float = 60.0
) -> tuple[int, str, str]:
    """`python -m relay ARGS` to its end (at most `seconds`), from the event loop: exit
    status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *relay_command(*args),
        cwd=cwd,
        env=relay_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), seconds)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def start_relay(workdir: Path, toml: str) -> RelayProcess:
    """Write relay.toml (with {smtp}, {tracking}, {admin} port placeholders) and start serve."""
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    config = workdir / "relay.toml"
    config.write_text(toml.format(**ports), encoding="utf-8")
    proc = subprocess.Popen(
        relay_command("serve", "--config", str(config)),
        cwd=workdir,
        env=relay_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    for port in ports.values():
        wait_for_port(port, proc)
    return RelayProcess(
        proc, ports["smtp"], ports["tracking"], ports["admin"], ADMIN_TOKEN, workdir
    )


def stop_relay(relay: RelayProcess) -> tuple[int, str]:
    relay.proc.terminate()
    try:
        _, err = relay.proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        relay.proc.kill()
        _, err = relay.proc.communicate()
    return relay.proc.returncode, err.decode(errors="replace")


def end_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_role(role: str, config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        relay_command(role, "--config", str(config)),
        cwd=config.parent,
        env=relay_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for_port(port, proc)
    return proc


def stop_role(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode(errors="replace")


def write_config(
    tmp_path: Path, sink_port: int, *, tracking: str = "", more: str = ""
) -> tuple[Path, dict[str, int]]:
    """tmp_path/relay.toml: loopback listeners on free ports, admin token "t0ken", the sink
    as upstream; `tracking` is extra lines for that table, `more` extra tables."""
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\n'
        f'[upstream]\nurl = "smtp://127.0.0.1:{sink_port}"\n'
        f'[tracking]\nbase_url = "http://127.0.0.1:{ports["tracking"]}"\n'
        f'listen = "127.0.0.1:{ports["tracking"]}"\n{tracking}'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "t0ken"\n{more}',
        encoding="utf-8",
    )
    return config, ports


def relay_one(smtp_port: int, sink: SinkHandler, message: bytes) -> bytes:
    """Sends `message` from alice@example.com to bob@example.net through the relay's SMTP
    port; the one copy the sink received."""
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], message)
    [delivered] = sink.wait_for(1)
    return delivered.data


def spawn_relay(
    config: Path,
    *,
    role: str = "serve",
    log: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """`python -m relay ROLE --config CONFIG` in the config's folder; stderr into `log` when
    given (for tests that read the log as it grows), else a pipe."""
    stderr: Any = subprocess.PIPE
    if log is not None:
        stderr = log.open("wb")
    try:
        return subprocess.Popen(
            relay_command(role, "--config", str(config)),
            cwd=config.parent,
            env=relay_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=preexec_fn,
        )
    finally:
        if log is not None:
            stderr.close()
