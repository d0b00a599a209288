"""One reading of the header block, over real sockets.

A bare CR or bare LF splits a header line for some readers and not for others
(the relay splits on LF; aiosmtplib sends every bare CR and LF to the upstream
as CRLF), so a header block holding one, or a NUL, is refused with 550 5.6.0
before anything is spooled. The body keeps its bytes. A user bound by
allowed_senders needs exactly one From field that reads as allowed addresses.
"""

from __future__ import annotations

import base64
import smtplib

import pytest
from smtp.running import OUTSIDE, PASSWORD, LineClient, StartRelay, alice, in_thread
from support.headers import split_head

from relay.rewrite.headers import header_values

HEAD = b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hi\r\n"


async def send_data(client: LineClient, data: bytes, sender: str = "alice@example.com") -> str:
    """MAIL, RCPT and DATA with data sent exactly as given (dot-stuffing aside)."""
    assert (await client.command(f"MAIL FROM:<{sender}>")).startswith("250")
    assert (await client.command("RCPT TO:<bob@example.net>")).startswith("250")
    assert (await client.command("DATA")).startswith("354")
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    await client.send((b"." if stuffed.startswith(b".") else b"") + stuffed + b".\r\n")
    return await client.reply()


async def login(client: LineClient) -> None:
    assert (await client.command("EHLO client.test")).startswith("250")
    token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    assert (await client.command(f"AUTH PLAIN {token}")).startswith("235")


async def restricted_relay(start_relay: StartRelay, password_hash: str) -> int:
    relay = await start_relay(
        allowed_networks=OUTSIDE,
        require_tls_for_auth=False,
        users=(alice(password_hash, "alice@example.com"),),
    )
    return relay.port


async def test_a_from_hidden_behind_a_bare_cr_is_refused(
    start_relay: StartRelay, password_hash: str
) -> None:
    """The issue's example: the CR would become CRLF on the way to the upstream."""
    port = await restricted_relay(start_relay, password_hash)
    client = await LineClient.connect(port)
    await login(client)
    forged = HEAD + b'X-Note: hi\rFrom: "CEO" <ceo@evil.com>\r\n\r\nPay the invoice.\r\n'
    reply = await send_data(client, forged)
    assert reply.startswith("550 5.6.0 ")
    assert reply == "550 5.6.0 Bare CR, bare LF or NUL in the header block"
    # the session goes on: a clean message from the same user is accepted
    assert (await send_data(client, HEAD + b"\r\nhello\r\n")).startswith("250 2.0.0")
    await client.close()


@pytest.mark.parametrize(
    "head",
    [
        b"Subject: hi\rFrom: ceo@evil.com\r\n",  # bare CR
        b"Subject: hi\nFrom: ceo@evil.com\r\n",  # bare LF
        b"Subject: hi\r\n\rFrom: ceo@evil.com\r\n",  # bare CR as an empty line
        b"Subject: hi\n\r\nX-Track: none\r\n",  # bare LF ending the block for the relay only
        b"Subject: h\0i\r\n",  # NUL
        b"X-Note: hi\rX-Track: none\r\n",  # a control header hidden the same way
        b"X-Note: hi\rX-Mailgun-Track: no\r\n",
    ],
)
async def test_bare_cr_lf_or_nul_in_the_header_block_is_refused_before_spooling(
    start_relay: StartRelay, head: bytes
) -> None:
    relay = await start_relay()
    client = await LineClient.greeted(relay.port)
    reply = await send_data(client, HEAD + head + b"\r\nbody\r\n")
    await client.close()
    assert reply.startswith("550 5.6.0 ")
    assert await relay.spooled() == []
    assert relay.woken == []


async def test_the_same_bytes_in_the_body_are_relayed_unchanged(start_relay: StartRelay) -> None:
    relay = await start_relay()
    body = b"bare\rCR, bare\nLF, N\0UL\r\n\rX-Track: none\r\n\nFrom: x@example.com\r\nend\r\n"
    client = await LineClient.greeted(relay.port)
    refused = await send_data(client, HEAD + b"X-Note: a\rb\r\n\r\nbody\r\n")
    accepted = await send_data(client, HEAD + b"\r\n" + body)
    await client.close()
    assert refused.startswith("550 5.6.0 ")
    assert accepted.startswith("250 2.0.0")
    [(msg, raw, _copies)] = await relay.spooled()
    assert split_head(raw)[1] == body
    assert msg.decision.opens and msg.decision.clicks  # the X-Track in the body is not read
    assert header_values(raw, "from") == ["alice@example.com"]


@pytest.mark.parametrize(
    "head",
    [
        b"To: bob@example.net\r\nSubject: no From at all\r\n",
        b"From: alice\r\nSubject: no address\r\n",
        b"From: Alice <alice@example.com\r\nSubject: unclosed\r\n",
        b"From: alice@example.com\r\nFrom: alice@example.com\r\nSubject: two From fields\r\n",
        b"From: alice@example.com\r\nSubject: x\r\nfrom: alice@example.com\r\n",
        b"From: undisclosed:;\r\nSubject: an empty group\r\n",
        b"From:\r\nSubject: empty\r\n",
        b"From : alice@example.com\r\nSubject: a blank before the colon\r\n",
        b"Subject: x\r\na line that is not a field\r\nFrom: alice@example.com\r\n",
        b" From: alice@example.com\r\nSubject: the first line folded\r\n",
    ],
)
async def test_a_restricted_user_needs_one_readable_from(
    start_relay: StartRelay, password_hash: str, head: bytes
) -> None:
    port = await restricted_relay(start_relay, password_hash)
    client = await LineClient.connect(port)
    await login(client)
    reply = await send_data(client, head + b"\r\nhello\r\n")
    await client.close()
    assert reply.startswith("550 5.7.1 From: address not allowed")


async def test_unrestricted_senders_may_still_omit_from(start_relay: StartRelay) -> None:
    relay = await start_relay()
    data = b"To: bob@example.net\r\nSubject: no From\r\n\r\nhello\r\n"
    await in_thread(send_smtplib, relay.port, data)
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.sender == "alice@example.com"  # the envelope sender stands in


def send_smtplib(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], data)


@pytest.mark.parametrize(
    "path",
    [b'"a\rb c"@example.net', b'"a\\\rb c"@example.net', b'"a\0b c"@x.net'],
)
async def test_a_quoted_local_part_with_a_control_character_is_refused(
    start_relay: StartRelay, path: bytes
) -> None:
    relay = await start_relay()
    client = await LineClient.greeted(relay.port)
    await client.send(b"MAIL FROM:<" + path + b">\r\n")
    mail = await client.reply()
    assert (await client.command("RSET")).startswith("250")
    assert (await client.command("MAIL FROM:<alice@example.com>")).startswith("250")
    await client.send(b"RCPT TO:<" + path + b">\r\n")
    rcpt = await client.reply()
    await client.close()
    assert mail.startswith("553 5.1.3")
    assert rcpt.startswith("553 5.1.3")
