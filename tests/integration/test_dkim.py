"""DKIM through the real relay: re-signing rewritten copies, and signed mail left alone.

The key is made in the test; dkimpy verifies what the sink received, with a
DNS lookup answered from the test's own public key.
"""

from __future__ import annotations

import re
import smtplib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from support.dkim_keys import dns_answering, make_key
from support.headers import split_head
from support.processes import (
    RelayProcess,
    SinkHandler,
    relay_command,
    relay_env,
    relay_toml,
    start_relay,
    stop_relay,
)

from relay.rewrite.headers import header_values


def relay_config(sink_port: int) -> str:
    return relay_toml(f"smtp://127.0.0.1:{sink_port}")


DKIM_TABLE = """
[dkim]
domain = "example.com"
selector = "relay"
private_key = "dkim.pem"
"""

HTML_MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: signed offer\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <offer-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b'<html><body><p>Hello, see <a href="https://example.com/offer?a=1&amp;b=2">the offer'
    b"</a>.</p></body></html>\r\n"
)


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return make_key()


@pytest.fixture
def relay_with(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> Iterator[Callable[[str], RelayProcess]]:
    started: list[RelayProcess] = []

    def start(extra: str) -> RelayProcess:
        relay = start_relay(tmp_path, relay_config(sink[1]) + extra)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        stop_relay(relay)


@pytest.fixture
def signing_relay(
    tmp_path: Path, keys: tuple[bytes, bytes], relay_with: Callable[[str], RelayProcess]
) -> Callable[[str], RelayProcess]:
    """Starts a relay signing with the module's key (dkim.pem in its folder): its config
    with DKIM_TABLE and the extra lines given after it."""
    (tmp_path / "dkim.pem").write_bytes(keys[0])
    return lambda extra: relay_with(DKIM_TABLE + extra)


def send(relay: RelayProcess, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=20) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], raw)


def without_received(raw: bytes) -> bytes:
    """The delivered copy minus the one Received field the relay put on top."""
    assert raw.startswith(b"Received: ")
    return re.sub(rb"\AReceived: [^\n]*\n(?:[ \t][^\n]*\n)*", b"", raw)


def test_rewritten_copy_is_signed_and_verifies(
    keys: tuple[bytes, bytes],
    signing_relay: Callable[[str], RelayProcess],
    sink: tuple[SinkHandler, int],
) -> None:
    txt = keys[1]
    relay = signing_relay("")
    # Two earlier signatures: a stale one of ours and one of the sender's ESP; the
    # rewrite breaks both, so neither may go out.
    stale = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=old; h=from;\r\n"
        b" bh=AAAA; b=BBBB\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=esp.example; s=k1; h=from; bh=CCCC; b=DDDD\r\n"
    )
    send(relay, stale + HTML_MESSAGE)
    delivered = sink[0].wait_for(1)[0].data
    assert f"http://127.0.0.1:{relay.tracking_port}/c/".encode() in delivered
    signatures = header_values(delivered, "dkim-signature")
    assert len(signatures) == 1
    assert "d=example.com" in signatures[0] and "s=relay" in signatures[0]
    lookup = dns_answering({b"relay._domainkey.example.com": txt})
    assert dkim.verify(delivered, dnsfunc=lookup)
    tampered = delivered.replace(b"Hello", b"Hallo")
    assert not dkim.verify(tampered, dnsfunc=lookup)


def test_signs_the_configured_headers(
    keys: tuple[bytes, bytes],
    signing_relay: Callable[[str], RelayProcess],
    sink: tuple[SinkHandler, int],
) -> None:
    txt = keys[1]
    relay = signing_relay('headers = ["From", "Subject"]\n')
    # bare LFs in the body (in the header block they are refused): CRLF on the wire
    head, body = HTML_MESSAGE.split(b"\r\n\r\n", 1)
    send(relay, head + b"\r\n\r\n" + body.replace(b"\r\n", b"\n"))
    delivered = sink[0].wait_for(1)[0].data
    (signature,) = header_values(delivered, "dkim-signature")
    signed = re.search(r"\bh=([^;]*)", signature)
    assert signed is not None
    assert [h.strip().lower() for h in signed.group(1).split(":")] == ["from", "subject"]
    assert dkim.verify(delivered, dnsfunc=dns_answering({b"relay._domainkey.example.com": txt}))


def test_signed_mail_without_a_key_is_relayed_untracked_and_still_verifies(
    keys: tuple[bytes, bytes],
    relay_with: Callable[[str], RelayProcess],
    sink: tuple[SinkHandler, int],
) -> None:
    """The sender's own signature (simple/simple: every byte counts) survives the relay."""
    pem, txt = keys
    signature = dkim.sign(
        HTML_MESSAGE,
        b"mail",
        b"sender.example",
        pem,
        canonicalize=(b"simple", b"simple"),
        include_headers=[b"from", b"to", b"subject", b"content-type"],
    )
    original = signature + HTML_MESSAGE
    relay = relay_with("")
    send(relay, original)
    delivered = sink[0].wait_for(1)[0].data
    assert without_received(delivered) == original
    assert dkim.verify(delivered, dnsfunc=dns_answering({b"mail._domainkey.sender.example": txt}))


def test_unsigned_untouched_copy_is_not_signed(
    signing_relay: Callable[[str], RelayProcess], sink: tuple[SinkHandler, int]
) -> None:
    """A copy the relay did not change keeps its bytes: nothing to re-sign."""
    relay = signing_relay("")
    text_only = HTML_MESSAGE.replace(b"text/html", b"text/plain")
    send(relay, text_only)
    delivered = sink[0].wait_for(1)[0].data
    assert without_received(delivered) == text_only
    assert header_values(delivered, "dkim-signature") == []
    assert split_head(delivered)[1] == split_head(text_only)[1]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n",
            "usable",
        ),
        (b"just some text\n", "usable"),
    ],
)
def test_a_broken_key_stops_start_up_naming_the_key(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    (tmp_path / "dkim.pem").write_bytes(content)
    config = tmp_path / "relay.toml"
    config.write_text(
        relay_config(1).format(smtp=1, tracking=2, admin=3) + DKIM_TABLE, encoding="utf-8"
    )
    done = subprocess.run(
        relay_command("serve", "--config", str(config)),
        cwd=tmp_path,
        env=relay_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.startswith("relay: dkim.private_key: "), err
    assert expected in err
    assert "Traceback" not in err
