"""Limits and address checks of the SMTP front: SIZE, max_recipients, syntax."""

from __future__ import annotations

import smtplib

import pytest
from smtp.running import LineClient, StartRelay, in_thread, refusals

MESSAGE = b"From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n"


def smtplib_send(port: int, sender: str, rcpts: list[str], data: bytes) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, rcpts, data)


async def test_size_parameter_over_the_limit_gets_552(start_relay: StartRelay) -> None:
    relay = await start_relay(max_message_size=1000)
    client = await LineClient.greeted(relay.port)
    reply = await client.command("MAIL FROM:<a@example.com> SIZE=1001")
    assert reply.startswith("552 5.3.4")
    assert (await client.command("MAIL FROM:<a@example.com> SIZE=1000")).startswith("250")
    await client.close()


async def test_data_over_the_limit_gets_552_and_the_session_goes_on(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(max_message_size=1000)
    client = await LineClient.greeted(relay.port)
    await client.command("MAIL FROM:<a@example.com>")
    await client.command("RCPT TO:<b@example.net>")
    assert (await client.command("DATA")).startswith("354")
    await client.send(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n")
    assert (await client.reply()).startswith("552 5.3.4")
    await client.command("MAIL FROM:<a@example.com>")
    await client.command("RCPT TO:<b@example.net>")
    await client.command("DATA")
    await client.send(b"Subject: small\r\n\r\nok\r\n.\r\n")
    assert (await client.reply()).startswith("250 2.0.0")
    await client.close()
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.subject == "small"


async def test_refusals_at_every_step_are_counted_by_reason(start_relay: StartRelay) -> None:
    """The front's own refusals (the 552 after the data) count as the handler's do."""
    relay = await start_relay(max_message_size=1000, max_recipients=1)
    client = await LineClient.greeted(relay.port)
    assert (await client.command("MAIL FROM:<a@example.com> SIZE=1001")).startswith("552 5.3.4")
    assert (await client.command("MAIL FROM:<nodomain>")).startswith("553 5.1.3")
    assert (await client.command("MAIL FROM:<a@example.com>")).startswith("250")
    assert (await client.command("RCPT TO:<no-at-sign>")).startswith("553 5.1.3")
    assert (await client.command("RCPT TO:<b@example.net>")).startswith("250")
    assert (await client.command("RCPT TO:<c@example.net>")).startswith("452 4.5.3")
    assert (await client.command("DATA")).startswith("354")
    await client.send(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n")
    assert (await client.reply()).startswith("552 5.3.4")
    await client.close()
    assert refusals(relay.metrics) == {"too_big": 2, "bad_address": 2, "too_many_recipients": 1}
    assert await relay.spooled() == []


async def test_recipients_over_max_recipients_get_452(start_relay: StartRelay) -> None:
    relay = await start_relay(max_recipients=2)
    rcpts = ["one@example.net", "two@example.net", "three@example.net"]
    refused = await in_thread(smtplib_send, relay.port, "a@example.com", rcpts, MESSAGE)
    assert refused["three@example.net"][0] == 452
    assert b"4.5.3" in refused["three@example.net"][1]
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.rcpt_tos == ("one@example.net", "two@example.net")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("MAIL FROM:<not an address>", "553"),
        ("MAIL FROM:<nodomain>", "553"),
        ("MAIL FROM:<a@exa mple.com>", "5"),
        ("MAIL FROM:garbage garbage", "5"),
    ],
)
async def test_garbage_sender_is_refused(start_relay: StartRelay, command: str, code: str) -> None:
    relay = await start_relay()
    client = await LineClient.greeted(relay.port)
    assert (await client.command(command)).startswith(code)
    await client.close()


async def test_garbage_recipient_is_refused_and_null_sender_accepted(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay()
    client = await LineClient.greeted(relay.port)
    assert (await client.command("MAIL FROM:<>")).startswith("250")
    assert (await client.command("RCPT TO:<@@>")).startswith("5")
    assert (await client.command("RCPT TO:<no-at-sign>")).startswith("553")
    assert (await client.command("RCPT TO:<b@example.net>")).startswith("250")
    await client.command("DATA")
    await client.send(b"Subject: bounce\r\n\r\nx\r\n.\r\n")
    assert (await client.reply()).startswith("250")
    await client.close()
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.mail_from == "" and msg.rcpt_tos == ("b@example.net",)
