"""The SMTP front over real sockets: smtplib, aiosmtplib, swaks and a bare socket
client against the real SQLite store."""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
from typing import Any

import aiosmtplib
import pytest
from smtp.running import OUTSIDE, LineClient, StartRelay, in_thread, refusals, smtp_config
from support.headers import split_head

from relay.core.config import Config
from relay.core.limits import ConnectionLimits
from relay.core.store import Store
from relay.rewrite.headers import header_values
from relay.smtp.auth import AuthThrottle
from relay.smtp.handler import RelayHandler
from relay.smtp.server import RelaySMTP, Sessions, SmtpServers

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Alice\r\n"
    b"X-Track: none\r\n"
    b"X-Mailgun-Track: no\r\n"
    b"In-Reply-To: <earlier@example.net>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b'<p>Hello <a href="https://example.com/">Bob</a></p>\r\n'
)


def smtplib_send(port: int, sender: str, rcpts: list[str], data: bytes) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, rcpts, data)


async def test_accepted_message_is_spooled_with_envelope_trace_and_decision(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    rcpts = ["bob@example.net", "carol@example.org"]
    await in_thread(smtplib_send, relay.port, "alice@example.com", rcpts, MESSAGE)
    [(msg, raw, copies)] = await relay.spooled()
    assert msg.mail_from == "alice@example.com"
    assert msg.rcpt_tos == tuple(rcpts)
    assert msg.client_addr == "127.0.0.1" and msg.auth_user is None
    assert msg.sender == "alice@example.com"
    assert msg.subject == "Grüße from Alice"
    assert msg.decision.opens is False and msg.decision.clicks is False  # X-Track: none
    assert sorted(c.recipient or "" for c in copies) == sorted(rcpts)
    head, body = split_head(raw)
    assert head.startswith(b"Received: from ")
    received = header_values(raw, "received")[0]
    assert re.fullmatch(
        r"from \S+ \(\[127\.0\.0\.1\]\)\s+by relay\.test with ESMTP id \w+; .+", received
    )
    assert re.fullmatch(r"<[0-9a-f]{32}@relay\.test>", header_values(raw, "message-id")[0])
    assert msg.message_id_header == header_values(raw, "message-id")[0]
    assert not header_values(raw, "x-track") and not header_values(raw, "x-mailgun-track")
    assert body == MESSAGE.split(b"\r\n\r\n", 1)[1]
    assert len(relay.woken) == 1


async def test_queued_as_reply_names_the_stored_id(start_relay: StartRelay) -> None:
    relay = await start_relay()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    async with client:
        errors, reply = await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    [(msg, raw, _copies)] = await relay.spooled()
    assert errors == {}
    assert reply == f"2.0.0 Ok: queued as {msg.id}"
    assert header_values(raw, "received")[0].endswith("for <b@example.net>; " + received_date(raw))


def received_date(raw: bytes) -> str:
    return header_values(raw, "received")[0].rsplit("; ", 1)[1]


async def test_existing_message_id_is_kept(start_relay: StartRelay) -> None:
    relay = await start_relay()
    data = b"Message-ID: <keep.me@example.com>\r\nSubject: x\r\n\r\nbody\r\n"
    await in_thread(smtplib_send, relay.port, "a@example.com", ["b@example.net"], data)
    [(msg, raw, _copies)] = await relay.spooled()
    assert header_values(raw, "message-id") == ["<keep.me@example.com>"]
    assert msg.message_id_header == "<keep.me@example.com>"


async def test_unauthenticated_client_outside_allowed_networks_gets_530(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(allowed_networks=OUTSIDE)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await in_thread(smtplib_send, relay.port, "a@example.com", ["b@example.net"], MESSAGE)
    assert refused.value.smtp_code == 530
    assert b"5.7.0" in refused.value.smtp_error
    assert await relay.spooled() == [] and relay.woken == []


async def test_pipelined_commands_of_a_refused_client_get_530_554(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(allowed_networks=OUTSIDE)
    client = await LineClient.connect(relay.port)
    ehlo = await client.command("EHLO client.test")
    assert "PIPELINING" in ehlo
    await client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    )
    replies = [await client.reply() for _ in range(3)]
    assert replies[0].startswith("530 5.7.0")
    assert replies[1].startswith("554 5.7.1")
    assert replies[2].startswith("503")
    await client.close()
    assert await relay.spooled() == []
    assert refusals(relay.metrics) == {"auth_required": 1, "relay_denied": 1}


async def test_ehlo_advertises_the_extensions(start_relay: StartRelay) -> None:
    relay = await start_relay(max_message_size=12345)
    client = await LineClient.connect(relay.port)
    ehlo = await client.command("EHLO client.test")
    await client.close()
    assert ehlo.startswith("250-relay.test")
    for keyword in ("SIZE 12345", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES"):
        assert f"250-{keyword}" in ehlo.splitlines()
    assert "STARTTLS" not in ehlo and "AUTH" not in ehlo  # no certificate, no TLS


async def test_long_lines_and_8bit_without_8bitmime_arrive_byte_identical(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    body = (
        b"<p>" + b"a" * 1200 + b"</p>\r\n"
        b"caf\xc3\xa9 and latin-1 \xe9\xff\r\n"
        b".a line that starts with a dot\r\n"
        b"..two dots\r\n"
        b"last line." + b"b" * 1500 + b"\r\n"
    )
    data = b"From: a@example.com\r\nSubject: long\r\n\r\n" + body
    stuffed = re.sub(rb"(?m)^\.", b"..", data)
    client = await LineClient.greeted(relay.port)
    await client.command("MAIL FROM:<a@example.com>")  # no BODY=8BITMIME
    await client.command("RCPT TO:<b@example.net>")
    assert (await client.command("DATA")).startswith("354")
    await client.send(stuffed + b".\r\n")
    assert (await client.reply()).startswith("250 2.0.0")
    await client.close()
    [(_msg, raw, _copies)] = await relay.spooled()
    assert raw.endswith(data)
    assert split_head(raw)[1] == body


async def test_several_messages_on_one_aiosmtplib_connection(start_relay: StartRelay) -> None:
    relay = await start_relay()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.port, start_tls=False)
    async with client:
        await client.ehlo()
        assert client.supports_extension("pipelining")
        for n in range(3):
            data = f"Subject: n{n}\r\n\r\nmessage {n}\r\n".encode()
            errors, reply = await client.sendmail("a@example.com", ["x@example.net"], data)
            assert errors == {} and reply.startswith("2.0.0 Ok: queued as ")
    assert [m.subject for m, _raw, _c in await relay.spooled()] == ["n0", "n1", "n2"]


async def test_pipelined_transactions_get_replies_in_order(start_relay: StartRelay) -> None:
    """RFC 2920: a whole envelope in one write, and the next one right after the dot."""
    relay = await start_relay(max_recipients=2)
    client = await LineClient.greeted(relay.port)
    envelope = (
        b"MAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\n"
        b"RCPT TO:<c@example.net>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n"
    )
    await client.send(envelope)
    replies = [await client.reply() for _ in range(5)]
    assert [r[:3] for r in replies] == ["250", "250", "250", "452", "354"]
    await client.send(b"Subject: first\r\n\r\none\r\n.\r\n" + envelope.replace(b"first", b""))
    replies = [await client.reply() for _ in range(6)]
    assert [r[:3] for r in replies] == ["250", "250", "250", "250", "452", "354"]
    await client.send(b"Subject: second\r\n\r\ntwo\r\n.\r\nQUIT\r\n")
    assert (await client.reply()).startswith("250 2.0.0")
    assert (await client.reply()).startswith("221")
    await client.close()
    spooled = await relay.spooled()
    assert [(m.subject, m.rcpt_tos) for m, _r, _c in spooled] == [
        ("first", ("b@example.net", "c@example.net")),
        ("second", ("b@example.net", "c@example.net")),
    ]


async def test_store_failure_answers_451_never_250(start_relay: StartRelay) -> None:
    relay = await start_relay()
    await relay.store.close()
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await in_thread(smtplib_send, relay.port, "a@example.com", ["b@example.net"], MESSAGE)
    assert failed.value.smtp_code == 451
    assert b"4.3.0" in failed.value.smtp_error
    assert relay.woken == []


async def test_close_lets_a_message_in_data_finish(start_relay: StartRelay) -> None:
    relay = await start_relay()
    client = await LineClient.greeted(relay.port)
    await client.command("MAIL FROM:<a@example.com>")
    await client.command("RCPT TO:<b@example.net>")
    await client.command("DATA")
    await client.send(b"Subject: during shutdown\r\n\r\nfirst half\r\n")
    port = relay.port
    closing = asyncio.create_task(relay.servers.close(grace=5.0))
    await asyncio.sleep(0.2)
    assert not closing.done()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
    await client.send(b"second half\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0")
    await asyncio.wait_for(closing, 5)
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.subject == "during shutdown"


async def test_swaks_sends_a_message(start_relay: StartRelay) -> None:
    assert shutil.which("swaks"), "swaks is a system dependency of the tests: make sysdeps"
    relay = await start_relay()
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", "127.0.0.1", "--port", str(relay.port),
        "--from", "alice@example.com", "--to", "bob@example.net",
        "--header", "Subject: from swaks", "--header", "X-Track: opens",
        "--body", "hello from swaks",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, output.decode()
    [(msg, raw, _copies)] = await relay.spooled()
    assert msg.subject == "from swaks" and msg.decision.clicks is False
    assert b"hello from swaks" in raw and not header_values(raw, "x-track")


class FaultyHandler(RelayHandler):
    """A handler with a bug in DATA: the one fault a real client cannot cause."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raise RuntimeError("a bug in the handler")


async def test_a_bug_answers_451_not_500_and_the_session_survives(store: Store) -> None:
    config = Config(smtp=smtp_config())
    sessions = Sessions(ConnectionLimits(10, 10))
    handler = FaultyHandler(config, store, lambda: None)
    server = await asyncio.get_running_loop().create_server(
        lambda: RelaySMTP(
            handler,
            tls_context=None,
            implicit_tls=False,
            throttle=AuthThrottle(),
            sessions=sessions,
        ),
        "127.0.0.1",
        0,
    )
    servers = SmtpServers([(server, False)], sessions)
    client = await LineClient.connect(servers.addresses()[0][1])
    await client.command("EHLO client.test")
    await client.command("MAIL FROM:<a@example.com>")
    await client.command("RCPT TO:<b@example.net>")
    await client.command("DATA")
    await client.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    assert (await client.reply()).startswith("451 4.3.0")
    assert (await client.command("NOOP")).startswith("250")
    await client.close()
    await servers.close(grace=1.0)
