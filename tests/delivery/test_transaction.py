"""The fast MAIL/RCPT/DATA path: what reaches a real server is what sendmail would send."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from delivery.upstreams import SinkFactory
from hypothesis import given
from hypothesis import strategies as st

from relay.core.config import UpstreamConfig
from relay.core.models import RecipientRefusal
from relay.delivery.transaction import wire_data
from relay.delivery.upstream import Upstream, open_upstream

HEAD = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: dots\r\n\r\n"


def upstream_for(port: int, **kwargs: Any) -> Upstream:
    config = UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=5.0, **kwargs)
    return open_upstream(config, helo_name="relay.test")


def aiosmtplib_payload(data: bytes) -> bytes:
    """What aiosmtplib's execute_data_command writes after 354."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


@given(st.lists(st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"a", b" ", b"\x00"])))
def test_payload_is_aiosmtplibs_whenever_the_fast_path_applies(pieces: list[bytes]) -> None:
    data = b"".join(pieces)
    wire = wire_data(data)
    clean = data.endswith(b"\r\n") and data.replace(b"\r\n", b"").count(b"\r") == 0
    clean = clean and data.replace(b"\r\n", b"").count(b"\n") == 0
    assert (wire is not None) == clean
    if wire is not None:
        assert wire == aiosmtplib_payload(data)


@pytest.mark.parametrize(
    "body",
    [
        b".starts with a dot\r\n.\r\n..\r\nmiddle . dot\r\n.end\r\n",
        b"bare LF\n.dot after a bare LF\nend\n",  # goes through sendmail
        b"no final line ending",
    ],
)
async def test_dot_lines_arrive_intact(make_sink: SinkFactory, body: bytes) -> None:
    handler, port = make_sink()
    upstream = upstream_for(port)
    outcome = await upstream.send("a@example.com", ["b@example.net"], HEAD + body)
    await upstream.close()
    assert outcome.status == "delivered"
    [got] = handler.messages
    assert got.data == normalize_message_line_endings(HEAD + body)
    sizes = [o.lower() for o in handler.mail_options[0] if o.lower().startswith("size=")]
    assert sizes == [f"size={len(normalize_message_line_endings(HEAD + body))}"]


async def test_quoted_local_part_and_literal_go_through(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = upstream_for(port)
    rcpts = ['"john doe"@example.net', "ops@[192.0.2.1]"]
    outcome = await upstream.send("a@example.com", rcpts, HEAD + b"hi\r\n")
    await upstream.close()
    assert outcome.status == "delivered"
    assert handler.messages[0].rcpt_tos == rcpts


async def test_refused_sender_is_permanent_and_the_connection_is_reused(
    make_sink: SinkFactory,
) -> None:
    handler, port = make_sink()
    handler.mail_replies.append("553 5.7.1 sender not allowed")
    upstream = upstream_for(port, max_connections=1)
    first = await upstream.send("a@example.com", ["b@example.net"], HEAD + b"one\r\n")
    second = await upstream.send("a@example.com", ["b@example.net"], HEAD + b"two\r\n")
    await upstream.close()
    assert (first.status, first.reply) == ("permanent", "553 5.7.1 sender not allowed")
    assert second.status == "delivered"
    assert [m.data for m in handler.messages] == [HEAD + b"two\r\n"]
    assert len({m.session for m in handler.messages}) == 1


async def test_one_refused_recipient_of_two(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    handler.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    upstream = upstream_for(port)
    outcome = await upstream.send(
        "a@example.com", ["gone@example.net", "b@example.net"], HEAD + b"hi\r\n"
    )
    await upstream.close()
    assert outcome.status == "delivered"
    assert outcome.refused == (
        RecipientRefusal("gone@example.net", "permanent", "550 5.1.1 no such user"),
    )
    assert handler.messages[0].rcpt_tos == ["b@example.net"]


async def test_a_data_failure_keeps_the_rcpt_refusals(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    handler.rcpt_replies["busy@example.net"] = "450 4.2.1 try later"
    handler.data_replies.append("554 5.6.0 content rejected")
    upstream = upstream_for(port)
    outcome = await upstream.send(
        "a@example.com", ["busy@example.net", "b@example.net"], HEAD + b"hi\r\n"
    )
    await upstream.close()
    assert (outcome.status, outcome.reply) == ("permanent", "554 5.6.0 content rejected")
    assert outcome.refused == (
        RecipientRefusal("busy@example.net", "temporary", "450 4.2.1 try later"),
    )
