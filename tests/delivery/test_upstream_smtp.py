"""The SMTP upstream against real servers on loopback: outcomes, pooling, AUTH."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from delivery.upstreams import SinkFactory, password_checker
from support.processes import free_port

from relay.core.config import ConfigError, UpstreamConfig
from relay.delivery.upstream import Upstream, open_upstream, parse_queue_id, parse_smtp_url

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nhello\r\n"


def upstream_for(url: str, **kwargs: Any) -> Upstream:
    return open_upstream(UpstreamConfig(url=url, timeout=5.0, **kwargs), helo_name="relay.test")


async def test_delivered_with_queue_id(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == "delivered"
    assert outcome.queue_id == "Q1"
    assert outcome.reply.startswith("250 ")
    [got] = handler.messages
    assert (got.mail_from, got.rcpt_tos) == ("a@example.com", ["b@example.net"])
    assert got.data == MESSAGE


async def test_null_sender_and_8bit_body(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    body = MESSAGE.replace(b"hello", "grüße".encode())
    outcome = await upstream.send("", ["b@example.net"], body)
    await upstream.close()
    assert outcome.status == "delivered"
    assert handler.messages[0].mail_from == "<>"  # aiosmtpd's spelling of the null sender
    assert handler.messages[0].data == body
    assert "BODY=8BITMIME" in handler.mail_options[0]


@pytest.mark.parametrize(
    ("reply", "status"),
    [("451 4.3.0 try later", "temporary"), ("554 5.7.1 spam", "permanent")],
)
async def test_data_reply_decides_outcome(make_sink: SinkFactory, reply: str, status: str) -> None:
    handler, port = make_sink()
    handler.data_replies.append(reply)
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    assert (outcome.status, outcome.reply) == (status, reply)
    # The connection survives a refusal: the next message goes over it after RSET.
    again = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert again.status == "delivered"
    assert len(handler.messages) == 1


@pytest.mark.parametrize(
    ("reply", "status"),
    [("450 4.2.0 mailbox busy", "temporary"), ("550 5.1.1 no such user", "permanent")],
)
async def test_refused_recipient_is_the_outcome(
    make_sink: SinkFactory, reply: str, status: str
) -> None:
    handler, port = make_sink()
    handler.rcpt_replies["b@example.net"] = reply
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == status
    assert reply in outcome.reply
    assert handler.messages == []


async def test_shared_copy_partly_refused_is_delivered(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    handler.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net", "gone@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == "delivered"
    assert [(r.address, r.status) for r in outcome.refused] == [("gone@example.net", "permanent")]
    assert outcome.refused[0].reply.startswith("550")
    assert handler.messages[0].rcpt_tos == ["b@example.net"]


async def test_connections_are_pooled_and_bounded(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = upstream_for(f"smtp://127.0.0.1:{port}", max_connections=2)
    first = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    second = await upstream.send("a@example.com", ["c@example.net"], MESSAGE)
    assert first.status == second.status == "delivered"
    assert handler.messages[0].session == handler.messages[1].session
    outcomes = await asyncio.gather(
        *(upstream.send("a@example.com", [f"r{i}@example.net"], MESSAGE) for i in range(6))
    )
    await upstream.close()
    assert {o.status for o in outcomes} == {"delivered"}
    assert len({m.session for m in handler.messages}) <= 2


async def test_upstream_down_is_temporary() -> None:
    upstream = upstream_for(f"smtp://127.0.0.1:{free_port()}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == "temporary"
    assert "127.0.0.1" in outcome.reply


@pytest.mark.parametrize("mode", ["garbage", "garbage-greeting", "hangup"])
async def test_misbehaving_upstream_is_temporary(
    misbehaving: Callable[[str], Any], mode: str
) -> None:
    port = await misbehaving(mode)
    upstream = upstream_for(f"smtp://127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE * 2000)
    await upstream.close()
    assert outcome.status == "temporary", outcome


async def test_silent_upstream_times_out(misbehaving: Callable[[str], Any]) -> None:
    port = await misbehaving("silent")
    config = UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=0.5)
    upstream = open_upstream(config, helo_name="relay.test")
    outcome = await asyncio.wait_for(upstream.send("a@example.com", ["b@x.net"], MESSAGE), 5)
    await upstream.close()
    assert outcome.status == "temporary"
    assert "imed out" in outcome.reply


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_auth_to_the_upstream(make_sink: SinkFactory) -> None:
    checker = password_checker("relay", "s3cret")
    handler, port = make_sink(authenticator=checker, auth_required=True, auth_require_tls=False)
    good = upstream_for(f"smtp://127.0.0.1:{port}", username="relay", password="s3cret")
    outcome = await good.send("a@example.com", ["b@example.net"], MESSAGE)
    await good.close()
    assert outcome.status == "delivered"
    bad = upstream_for(f"smtp://127.0.0.1:{port}", username="relay", password="wrong")
    refused = await bad.send("a@example.com", ["b@example.net"], MESSAGE)
    await bad.close()
    # A wrong password is our config's fault: the mail waits for the fix, it does not bounce.
    assert refused.status == "temporary"
    assert "535" in refused.reply
    assert len(handler.messages) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_credentials_in_the_url(make_sink: SinkFactory) -> None:
    checker = password_checker("us@er", "p:w")
    _handler, port = make_sink(authenticator=checker, auth_required=True, auth_require_tls=False)
    upstream = upstream_for(f"smtp://us%40er:p%3Aw@127.0.0.1:{port}")
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == "delivered"


def test_url_parsing() -> None:
    target = parse_smtp_url(UpstreamConfig(url="smtps://mail.example.com"))
    assert (target.mode, target.host, target.port) == ("smtps", "mail.example.com", 465)
    assert parse_smtp_url(UpstreamConfig(url="smtp+starttls://[::1]")).port == 587
    assert parse_smtp_url(UpstreamConfig(url="smtp://h")).port == 25
    for bad in ("http://h:25", "smtp://", "smtp://h:99999", "smtp://h:25/path", "maildir:"):
        with pytest.raises(ConfigError, match=r"upstream\.url"):
            open_upstream(UpstreamConfig(url=bad))


def test_queue_id_parsing() -> None:
    assert parse_queue_id("2.0.0 Ok: queued as 4BxYz1Q2") == "4BxYz1Q2"
    assert parse_queue_id("OK id=1abc-2") == ""


async def test_greets_with_this_hosts_name_by_default(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = open_upstream(UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=5.0))
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    assert outcome.status == "delivered"
    assert len(handler.messages) == 1
