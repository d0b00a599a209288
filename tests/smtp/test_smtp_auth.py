"""AUTH, STARTTLS and implicit TLS over real sockets with a trustme certificate."""

from __future__ import annotations

import base64
import dataclasses
import smtplib
import ssl
import time
from typing import Any

import pytest
from smtp.running import (
    OUTSIDE,
    PASSWORD,
    Certs,
    LineClient,
    Relay,
    StartRelay,
    alice,
    in_thread,
)

from relay.core.config import HostPort, SmtpConfig, SmtpUser
from relay.rewrite.headers import header_values
from relay.smtp.auth import ThrottleSettings, check_credentials

MESSAGE = b"From: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


def send_authenticated(
    port: int,
    context: ssl.SSLContext,
    mechanism: str,
    *,
    implicit: bool = False,
    sender: str = "alice@example.com",
    data: bytes = MESSAGE,
) -> None:
    if implicit:
        client: smtplib.SMTP = smtplib.SMTP_SSL("localhost", port, context=context, timeout=10)
    else:
        client = smtplib.SMTP("localhost", port, timeout=10)
    with client:
        client.ehlo()
        if not implicit:
            client.starttls(context=context)
            client.ehlo()
        assert mechanism in client.esmtp_features["auth"].split()
        client.login("alice", PASSWORD, initial_response_ok=mechanism == "PLAIN")
        client.sendmail(sender, ["bob@example.net"], data)


async def tls_relay(
    start_relay: StartRelay, certs: Certs, user: SmtpUser, **settings: Any
) -> Relay:
    """A relay with the test certificate that takes mail from OUTSIDE only from `user`
    (AUTH after STARTTLS), with any other settings given."""
    return await start_relay(
        allowed_networks=OUTSIDE, tls_cert=certs.cert, tls_key=certs.key, users=(user,), **settings
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_auth_over_starttls_lets_a_user_relay(
    start_relay: StartRelay, certs: Certs, password_hash: str, mechanism: str
) -> None:
    relay = await tls_relay(start_relay, certs, alice(password_hash))
    await in_thread(send_authenticated, relay.port, certs.client, mechanism)
    [(msg, raw, _copies)] = await relay.spooled()
    assert msg.auth_user == "alice"
    assert " with ESMTPSA id " in header_values(raw, "received")[0]


async def test_auth_is_neither_offered_nor_accepted_before_tls(
    start_relay: StartRelay, certs: Certs, password_hash: str
) -> None:
    relay = await start_relay(tls_cert=certs.cert, tls_key=certs.key, users=(alice(password_hash),))
    client = await LineClient.connect(relay.port)
    ehlo = await client.command("EHLO client.test")
    assert "250-STARTTLS" in ehlo.splitlines() and "AUTH" not in ehlo
    token = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    reply = await client.command(f"AUTH PLAIN {token}")
    assert reply.startswith("538 5.7.11")
    await client.close()


async def test_implicit_tls_listener(
    start_relay: StartRelay, certs: Certs, password_hash: str
) -> None:
    relay = await tls_relay(
        start_relay, certs, alice(password_hash), implicit_tls_listen=(HostPort("127.0.0.1", 0),)
    )
    await in_thread(send_authenticated, relay.tls_port, certs.client, "PLAIN", implicit=True)
    [(msg, raw, _copies)] = await relay.spooled()
    assert msg.auth_user == "alice"
    assert " with ESMTPSA id " in header_values(raw, "received")[0]


async def auth_plain(port: int, password: str, user: str = "alice") -> tuple[str, float]:
    """One session, one AUTH PLAIN: the reply's code and status, and how long it took."""
    client = await LineClient.connect(port)
    try:
        assert "AUTH" in await client.command("EHLO client.test")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        started = time.monotonic()
        reply = await client.command(f"AUTH PLAIN {token}")
        return reply[:9], time.monotonic() - started
    finally:
        await client.close()


async def test_every_auth_answer_waits_the_same_delay(
    start_relay: StartRelay, password_hash: str
) -> None:
    """Success, failure and a refusal past the budget all come after the reply delay,
    so the reply time does not tell a right password from a wrong one."""
    relay = await start_relay(
        throttle=ThrottleSettings(reply_delay=0.3, failures_per_address=2),
        require_tls_for_auth=False,
        users=(alice(password_hash),),
    )
    answers = [
        await auth_plain(relay.port, PASSWORD),
        await auth_plain(relay.port, "wrong"),
        await auth_plain(relay.port, "wrong again"),
        await auth_plain(relay.port, PASSWORD),  # the budget is used up: not even checked
    ]
    assert [reply for reply, _ in answers] == ["235 2.7.0", "535 5.7.8", "535 5.7.8", "454 4.7.0"]
    for _reply, seconds in answers:
        assert seconds >= 0.3


async def test_connection_is_dropped_after_repeated_failures(
    start_relay: StartRelay, password_hash: str
) -> None:
    relay = await start_relay(
        throttle=ThrottleSettings(reply_delay=0.01, failures_per_connection=3),
        require_tls_for_auth=False,
        users=(alice(password_hash),),
    )
    client = await LineClient.connect(relay.port)
    assert "AUTH LOGIN PLAIN" in await client.command("EHLO client.test")
    token = base64.b64encode(b"\0alice\0nope").decode()
    assert (await client.command(f"AUTH PLAIN {token}")).startswith("535 5.7.8")
    assert (await client.command(f"AUTH PLAIN {token}")).startswith("535 5.7.8")
    assert (await client.command(f"AUTH PLAIN {token}")).startswith("421 4.7.0")
    assert await client.reply() == ""  # closed by the server
    await client.close()


async def test_allowed_senders_bind_envelope_and_from(
    start_relay: StartRelay, certs: Certs, password_hash: str
) -> None:
    relay = await tls_relay(
        start_relay, certs, alice(password_hash, "alice@example.com", "*@sales.example.com")
    )
    with pytest.raises(smtplib.SMTPSenderRefused) as envelope:
        await in_thread(
            send_authenticated, relay.port, certs.client, "PLAIN", sender="mallory@example.com"
        )
    assert envelope.value.smtp_code == 550 and b"5.7.1" in envelope.value.smtp_error
    forged = MESSAGE.replace(b"From: alice@example.com", b"From: Boss <ceo@example.com>")
    with pytest.raises(smtplib.SMTPDataError) as header:
        await in_thread(send_authenticated, relay.port, certs.client, "PLAIN", data=forged)
    assert header.value.smtp_code == 550 and b"5.7.1" in header.value.smtp_error
    assert await relay.spooled() == []
    sales = MESSAGE.replace(b"From: alice@example.com", b"From: Team <team@sales.example.com>")
    await in_thread(send_authenticated, relay.port, certs.client, "PLAIN", data=sales)
    [(msg, _raw, _copies)] = await relay.spooled()
    assert msg.sender == "team@sales.example.com"


async def test_a_reload_binds_a_user_to_the_new_allowed_senders(
    start_relay: StartRelay, certs: Certs, password_hash: str
) -> None:
    relay = await tls_relay(start_relay, certs, alice(password_hash))
    await in_thread(send_authenticated, relay.port, certs.client, "PLAIN", sender="any@example.org")
    bound = (alice(password_hash, "alice@example.com"),)
    relay.servers.reload(
        dataclasses.replace(relay.config, smtp=dataclasses.replace(relay.config.smtp, users=bound))
    )
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await in_thread(
            send_authenticated, relay.port, certs.client, "PLAIN", sender="any@example.org"
        )
    assert refused.value.smtp_code == 550
    assert len(await relay.spooled()) == 1


async def test_a_user_is_found_by_the_exact_name(password_hash: str) -> None:
    """AUTH names are case-sensitive, like the password."""
    config = SmtpConfig(users=(SmtpUser("alice", "not a hash"), SmtpUser("bob", password_hash)))
    secret = PASSWORD.encode()
    assert await check_credentials(config, b"bob", secret) == "bob"
    assert await check_credentials(config, b"Bob", secret) is None
    assert await check_credentials(config, b"carol", secret) is None
