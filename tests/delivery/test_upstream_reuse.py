"""Reusing upstream connections without a RSET per message, and recovering when that was wrong."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from delivery.upstreams import ScriptedHandler
from support.processes import free_port

from relay.core.config import UpstreamConfig
from relay.core.models import DeliveryOutcome
from relay.delivery.upstream import Upstream, open_upstream

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class CountingHandler(ScriptedHandler):
    """Counts RSETs; MAIL commands numbered in refuse_mail get that reply instead."""

    rsets: int = 0
    mails: int = 0
    refuse_mail: dict[int, str] = field(default_factory=dict)

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.rsets += 1
        return "250 OK"

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails += 1
        if self.mails in self.refuse_mail:
            return self.refuse_mail[self.mails]
        return await super().handle_MAIL(server, session, envelope, address, options)


@pytest.fixture
def sink() -> Iterator[tuple[CountingHandler, int]]:
    handler = CountingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    yield handler, port
    controller.stop()


def one_connection(port: int) -> Upstream:
    config = UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=5.0, max_connections=1)
    return open_upstream(config, helo_name="relay.test")


async def two_sends_refusing_the_second(
    sink: tuple[CountingHandler, int], reply: str
) -> tuple[DeliveryOutcome, DeliveryOutcome]:
    """Sends to b@ then c@ over one connection, the sink answering the second MAIL with
    `reply`; the two outcomes."""
    handler, port = sink
    handler.refuse_mail[2] = reply
    up = one_connection(port)
    first = await up.send("a@example.com", ["b@example.net"], MESSAGE)
    second = await up.send("a@example.com", ["c@example.net"], MESSAGE)
    await up.close()
    return first, second


async def test_back_to_back_messages_share_a_connection_without_rset(
    sink: tuple[CountingHandler, int],
) -> None:
    handler, port = sink
    up = one_connection(port)
    outcomes = [await up.send("a@example.com", [f"r{i}@example.net"], MESSAGE) for i in range(5)]
    await up.close()
    assert {o.status for o in outcomes} == {"delivered"}
    assert len({m.session for m in handler.messages}) == 1
    assert handler.rsets == 0


async def test_a_421_on_an_unchecked_connection_is_retried_on_a_checked_one(
    sink: tuple[CountingHandler, int],
) -> None:
    handler = sink[0]
    first, second = await two_sends_refusing_the_second(sink, "421 4.3.2 closing for maintenance")
    assert (first.status, second.status) == ("delivered", "delivered")
    assert [m.rcpt_tos for m in handler.messages] == [["b@example.net"], ["c@example.net"]]
    assert handler.mails == 3
    # the retry went over a checked connection: a new one (aiosmtplib drops it on 421) or RSET
    first_session, second_session = (m.session for m in handler.messages)
    assert second_session != first_session or handler.rsets >= 1


async def test_a_4xx_that_is_not_about_the_connection_is_not_retried(
    sink: tuple[CountingHandler, int],
) -> None:
    handler = sink[0]
    _first, second = await two_sends_refusing_the_second(sink, "451 4.3.0 try later")
    assert (second.status, second.reply) == ("temporary", "451 4.3.0 try later")
    assert handler.mails == 2 and len(handler.messages) == 1
