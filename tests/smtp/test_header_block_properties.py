"""Hypothesis: whatever the header block, the From that allowed_senders checks is
the From the upstream receives (or the message is refused).

The whole path runs for real: smtplib submits as a user bound to
alice@example.com, the SMTP front spools to a SQLite store, the delivery worker
hands the copy to an aiosmtpd sink through aiosmtplib (which turns bare CRs and
LFs into CRLF). The sink's message is read with the email package, a reader
independent of the relay's.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import smtplib
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import compat32
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from delivery.upstreams import Delivered, ScriptedHandler
from hypothesis import event, example, given
from hypothesis import strategies as st
from smtp.running import OUTSIDE, PASSWORD, alice, smtp_config
from support.processes import free_port
from support.stores import open_sqlite

from relay.core.config import Config, TrackingConfig, UpstreamConfig
from relay.core.tokens import TokenCodec
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker
from relay.policy import control_header_names
from relay.rewrite.headers import header_values
from relay.smtp.message import author_addresses
from relay.smtp.server import SmtpServers, start_smtp

T = TypeVar("T")
ALLOWED = "alice@example.com"


@dataclass
class Pipeline:
    """Relay front, store, delivery worker and sink, on an event loop in a thread."""

    loop: asyncio.AbstractEventLoop
    sink: ScriptedHandler
    port: int
    config: Config
    client: smtplib.SMTP | None = None
    counter: Iterator[int] = field(default_factory=itertools.count)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def submit(self, data: bytes) -> tuple[int, bytes, str]:
        """(reply code, reply text, the recipient) for one message from alice."""
        rcpt = f"n{next(self.counter)}@example.net"
        if self.client is None:
            self.client = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            self.client.login("alice", PASSWORD)
        try:
            self.client.sendmail(ALLOWED, [rcpt], data)
        except smtplib.SMTPDataError as refused:
            error = refused.smtp_error
            return refused.smtp_code, error if isinstance(error, bytes) else error.encode(), rcpt
        return 250, b"", rcpt

    def delivered(self, rcpt: str) -> Delivered:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for got in list(self.sink.messages):
                if got.rcpt_tos == [rcpt]:
                    return got
            time.sleep(0.005)
        raise AssertionError(f"nothing delivered to {rcpt}")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, password_hash: str) -> Iterator[Pipeline]:
    sink = ScriptedHandler()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port, decode_data=False)
    controller.start()
    config = Config(
        smtp=smtp_config(
            allowed_networks=OUTSIDE,
            require_tls_for_auth=False,
            users=(alice(password_hash, ALLOWED),),
        ),
        upstream=UpstreamConfig(url=f"smtp://127.0.0.1:{sink_port}", timeout=5.0),
        tracking=TrackingConfig(base_url="https://t.example.org"),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    folder = tmp_path_factory.mktemp("pipeline")

    async def start() -> tuple[Any, DeliveryWorker, SmtpServers]:
        store = await open_sqlite(folder / "relay.db")
        upstream = open_upstream(config.upstream, helo_name="relay.test")
        worker = DeliveryWorker(config, store, TokenCodec(["property-key"]), upstream)
        await worker.start()
        servers = await start_smtp(config, store, worker.wake)
        return store, worker, servers

    store, worker, servers = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    running = Pipeline(loop, sink, servers.addresses()[0][1], config)
    yield running

    async def stop() -> None:
        await servers.close(grace=1.0)
        await worker.stop()
        await store.close()

    if running.client is not None:
        running.client.close()
    running.run(stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    controller.stop()


OTHER_NAMES = ["X-Note", "Subject", "To", "X-Track", "X-Mailgun-Track", "X-PM-TrackOpens"]
OTHER_NAMES += ["Sender", "Reply-To"]
NAMES = ["From", "from", "FROM", "From ", " From", "From\t", "", *OTHER_NAMES]
VALUES = [
    ALLOWED,
    f"Alice <{ALLOWED}>",
    f"{ALLOWED} <ceo@evil.com>",
    f'"{ALLOWED}" <ceo@evil.com>',
    f"{ALLOWED}, ceo@evil.com",
    '"CEO" <ceo@evil.com>',
    "ceo@evil.com",
    "none",
    "no",
    "hi",
    "",
]
BREAKS = ["\r\n", "\r", "\n", "\r\n ", "\r\n\t", "\0", "\r\r\n", "\n\r", "\r\n\r\n"]
PIECES = st.one_of(
    st.sampled_from(VALUES),
    st.sampled_from(BREAKS),
    st.text(alphabet='aeZ<>@",:;()\\ \t\r\n\0.é', max_size=12),
)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """A header block of well-formed, folded and junk lines, a blank line and a body."""
    lines = []
    if draw(st.integers(0, 3)):
        lines.append(f"From: {ALLOWED}\r\n")
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 9))
        name = draw(st.sampled_from(NAMES))
        if kind < 3:  # well-formed, not a From
            lines.append(
                f"{draw(st.sampled_from(OTHER_NAMES))}: {draw(st.sampled_from(VALUES))}\r\n"
            )
        elif kind < 6:  # well-formed
            lines.append(f"{name}: {draw(st.sampled_from(VALUES))}\r\n")
        elif kind < 8:  # folded, and perhaps without a colon
            colon = draw(st.sampled_from([":", ""]))
            first, second = draw(st.sampled_from(VALUES)), draw(st.sampled_from(VALUES))
            fold = draw(st.sampled_from(["\r\n ", "\r\n\t"]))
            lines.append(f"{name}{colon} {first}{fold}{second}\r\n")
        else:  # anything, in pieces
            value = "".join(draw(st.lists(PIECES, max_size=4)))
            lines.append(f"{name}: {value}{draw(st.sampled_from(BREAKS))}")
    draw(st.randoms()).shuffle(lines)
    return ("".join(lines) + "\r\nbody\r\n").encode("utf-8")


def upstream_from(delivered: bytes) -> list[str]:
    """The From addresses as the email package reads the delivered copy."""
    message = BytesParser(policy=compat32).parsebytes(delivered, headersonly=True)
    values = [str(v) for v in message.get_all("from", [])]
    assert len(values) == 1, values
    return [addr for _name, addr in email.utils.getaddresses(values) if addr]


@given(header_blocks())
@example(f'X-Note: hi\rFrom: "CEO" <ceo@evil.com>\r\nFrom: {ALLOWED}\r\n\r\nx\r\n'.encode())
@example(f"From: {ALLOWED}\r\nX-Note: hi\rX-Track: none\r\n\r\nx\r\n".encode())
@example(f"From: {ALLOWED}\nFrom: ceo@evil.com\r\n\r\nx\r\n".encode())
@example(f"Subject: x\r\n\rFrom: {ALLOWED}\r\n\r\nx\r\n".encode())
@example(f"From: {ALLOWED}\r\n\r\nx\r\n".encode())
def test_the_from_checked_is_the_from_the_upstream_receives(
    pipeline: Pipeline, data: bytes
) -> None:
    code, text, rcpt = pipeline.submit(data)
    event(f"reply {code} {text[:5].decode()}")
    if code != 250:
        assert code == 550 and text[:6] in (b"5.6.0 ", b"5.7.1 "), (code, text)
        return
    checked = author_addresses(data)
    assert checked is not None and set(checked) == {ALLOWED}
    got = pipeline.delivered(rcpt).data
    assert upstream_from(got) == list(checked)
    assert header_values(got, "from") == header_values(data, "from")
    control = control_header_names(pipeline.config.smtp)
    message = BytesParser(policy=compat32).parsebytes(got, headersonly=True)
    assert not [name for name in message.keys() if name.strip().lower() in control]
