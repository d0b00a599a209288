"""Mail in, tracked mail out, opens and clicks recorded: the whole road, for real.

smtplib is the client, `python -m relay serve` the relay, an aiosmtpd sink the
upstream, an aiohttp client the recipient's mail client and browser.
"""

from __future__ import annotations

import email
import email.policy
import re
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import aiohttp
import pytest
import trustme
from support.processes import (
    RelayProcess,
    SinkHandler,
    relay_command,
    relay_env,
    relay_toml,
    start_relay,
    stop_relay,
)

from relay.core.passwords import hash_password

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
}

BOUNDARY = "==alt-boundary-42=="

TEXT_PART = (
    "Grüße aus Köln — the pricing page is https://example.com/pricing?a=1&b=2\r\n"
    "Ünïcödé text that must arrive byte for byte.\r\n"
).encode()

HTML = """<!DOCTYPE html>
<html><head><title>Offer</title></head>
<body>
<p>Hello Bob, <a href="https://example.com/pricing?a=1&amp;b=2">see our pricing</a>.</p>
<p><a href="mailto:sales@example.com">Mail us</a> or <a href="tel:+4930123">call</a>.</p>
<p><a href="#top">Top</a> <a href="/relative/path">relative</a></p>
<p><a href="https://example.com/docs">https://example.com/docs</a></p>
<p><a href="https://example.com/unsubscribe?u=1">Unsubscribe</a></p>
<p><a data-notrack href="https://example.com/private">private</a></p>
<!-- <a href="https://example.com/commented">commented out</a> -->
<map name="m"><area shape="rect" coords="0,0,10,10" href="https://example.com/map"></map>
<p><a href='https://example.org/caf\u00e9?q=\u00fc'>Intl</a></p>
</body>
</html>
"""

TRACKED = {
    "https://example.com/pricing?a=1&b=2",
    "https://example.com/map",
    "https://example.org/caf\u00e9?q=\u00fc",
}
UNTOUCHED = [
    'href="mailto:sales@example.com"',
    'href="tel:+4930123"',
    'href="#top"',
    'href="/relative/path"',
    'href="https://example.com/docs"',
    'href="https://example.com/unsubscribe?u=1"',
    '<!-- <a href="https://example.com/commented">commented out</a> -->',
]

CONFIG = relay_toml(
    "smtp://127.0.0.1:SINK", tracking='exclude_links = ["unsubscribe"]\nbot_click_window = "0s"'
)


def build_message() -> bytes:
    head = (
        "From: Alice <alice@example.com>\r\n"
        "To: bob@example.net, carol@example.org\r\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and an offer\r\n"
        "X-Track: all\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative; boundary="{BOUNDARY}"\r\n'
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
    )
    text = (
        f"--{BOUNDARY}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + TEXT_PART
    html = (
        f"--{BOUNDARY}\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + HTML.replace("\n", "\r\n")
    ).encode()
    return head.encode() + text + html + f"--{BOUNDARY}--\r\n".encode()


def parts(raw: bytes) -> tuple[Message, Message, Message]:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    text, html = msg.get_payload()
    return msg, text, html


def tracking_links(html: str, base: str) -> list[str]:
    return re.findall(r'href=["\'](' + re.escape(base) + r'/c/[^"\']+)["\']', html)


@pytest.fixture
def relay(tmp_path: Path, sink: tuple[SinkHandler, int]) -> Iterator[RelayProcess]:
    _, sink_port = sink
    process = start_relay(tmp_path, CONFIG.replace("SINK", str(sink_port)))
    yield process
    code, err = stop_relay(process)
    assert code == 0, err


async def test_tracked_mail_end_to_end(relay: RelayProcess, sink: tuple[SinkHandler, int]) -> None:
    handler, _ = sink
    original = build_message()
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        refused = client.sendmail(
            "alice@example.com", ["bob@example.net", "carol@example.org"], original
        )
    assert refused == {}

    delivered = handler.wait_for(2)
    assert sorted(tuple(m.rcpt_tos) for m in delivered) == [
        ("bob@example.net",),
        ("carol@example.org",),
    ]
    copies = {m.rcpt_tos[0]: m.data for m in delivered}
    _, original_text, _ = parts(original)
    clicks: dict[str, dict[str, str]] = {}
    for rcpt, raw in copies.items():
        msg, text, html = parts(raw)
        assert msg["X-Track"] is None, "control header must be stripped"
        assert msg["Received"] and "relay.test" in msg["Received"]
        assert msg["Message-ID"]
        assert text.as_bytes() == original_text.as_bytes()
        assert text.get_payload(decode=True) == TEXT_PART.removesuffix(b"\r\n")
        body = html.get_payload(decode=True).decode("utf-8")
        assert body.count(f"{relay.tracking_url}/o/") == 1
        for fragment in UNTOUCHED:
            assert fragment in body, fragment
        assert "data-notrack" not in body
        assert 'href="https://example.com/private"' in body
        clicks[rcpt] = await resolve_links(tracking_links(body, relay.tracking_url))
        assert set(clicks[rcpt]) == TRACKED
    assert set(clicks["bob@example.net"].values()).isdisjoint(clicks["carol@example.org"].values())

    bob_html = parts(copies["bob@example.net"])[2].get_payload(decode=True).decode()
    pixel = re.search(r'src="(' + re.escape(relay.tracking_url) + r'/o/[^"]+)"', bob_html)
    assert pixel is not None
    async with aiohttp.ClientSession(headers=BROWSER) as http:
        async with http.get(pixel.group(1)) as answer:
            assert answer.status == 200
            assert answer.headers["Content-Type"] == "image/gif"
            assert len(await answer.read()) == 43
        pricing = clicks["bob@example.net"]["https://example.com/pricing?a=1&b=2"]
        async with http.get(pricing, allow_redirects=False) as answer:
            assert answer.status == 302
            assert answer.headers["Location"] == "https://example.com/pricing?a=1&b=2"
        tampered = pricing[:-3] + ("AAA" if not pricing.endswith("AAA") else "BBB")
        async with http.get(tampered, allow_redirects=False) as answer:
            assert answer.status == 404
            assert "Location" not in answer.headers
        await check_api(http, relay)


async def resolve_links(links: list[str]) -> dict[str, str]:
    """original URL -> tracking URL, by asking the click endpoint (HEAD: not counted)."""
    found: dict[str, str] = {}
    async with aiohttp.ClientSession(headers=BROWSER) as http:
        for link in links:
            async with http.head(link, allow_redirects=False) as answer:
                assert answer.status == 302
                found[answer.headers["Location"]] = link
    return found


async def check_api(http: aiohttp.ClientSession, relay: RelayProcess) -> None:
    auth = {"Authorization": f"Bearer {relay.admin_token}"}
    async with http.get(f"{relay.admin_url}/api/messages") as answer:
        assert answer.status == 401
    async with http.get(f"{relay.admin_url}/api/messages", headers=auth) as answer:
        assert answer.status == 200
        listing = await answer.json()
    [summary] = listing["messages"]
    assert summary["sender"] == "alice@example.com"
    assert summary["recipients"] == 2
    assert summary["opens"]["human"] == 1 and summary["opens"]["unique_human"] == 1
    assert summary["clicks"]["human"] == 1 and summary["clicks"]["unique_human"] == 1
    async with http.get(f"{relay.admin_url}/api/messages/{summary['id']}", headers=auth) as a:
        assert a.status == 200
        detail = await a.json()
    people = {r["address"]: r for r in detail["recipients"]}
    bob, carol = people["bob@example.net"], people["carol@example.org"]
    assert bob["state"] == carol["state"] == "delivered"
    assert bob["opens"]["human"] == 1 and bob["clicks"]["human"] == 1
    assert bob["first_open"] is not None
    assert carol["opens"]["human"] == 0 and carol["clicks"]["human"] == 0
    by_url = {link["url"]: link["clicks"]["human"] for link in bob["links"]}
    assert by_url["https://example.com/pricing?a=1&b=2"] == 1
    assert by_url["https://example.com/map"] == 0


REFUSING_CONFIG = CONFIG.replace(
    'hostname = "relay.test"', 'hostname = "relay.test"\nallowed_networks = ["10.0.0.0/8"]'
)


def test_open_relay_refused(tmp_path: Path, sink: tuple[SinkHandler, int]) -> None:
    handler, sink_port = sink
    relay = start_relay(tmp_path, REFUSING_CONFIG.replace("SINK", str(sink_port)))
    try:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("alice@example.com", ["bob@example.net"], build_message())
            assert refused.value.smtp_code == 530
    finally:
        code, err = stop_relay(relay)
    assert code == 0, err
    assert handler.messages == []


def test_auth_over_starttls(tmp_path: Path, sink: tuple[SinkHandler, int]) -> None:
    handler, sink_port = sink
    ca = trustme.CA()
    cert = ca.issue_cert("relay.test", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(tmp_path / "relay.pem")
    toml = REFUSING_CONFIG.replace("SINK", str(sink_port)).replace(
        'allowed_networks = ["10.0.0.0/8"]',
        'allowed_networks = ["10.0.0.0/8"]\ntls_cert = "relay.pem"\ntls_key = "relay.pem"\n'
        f'[[smtp.users]]\nname = "alice"\npassword_hash = "{hash_password("s3cret")}"\n'
        'allowed_senders = ["alice@example.com"]',
    )
    relay = start_relay(tmp_path, toml)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("auth"), "AUTH must not be offered before TLS"
            client.starttls(context=context)
            client.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "s3cret")
            client.sendmail("alice@example.com", ["bob@example.net"], build_message())
        [delivered] = handler.wait_for(1)
        assert delivered.rcpt_tos == ["bob@example.net"]
    finally:
        code, err = stop_relay(relay)
    assert code == 0, err


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[smtp]\nmax_recipents = 5\n", "smtp.max_recipents"),
        ('[tracking]\nopens = "yes"\n', "tracking.opens"),
        ('[smtp]\nlisten = "127.0.0.1:99999"\n', "smtp.listen"),
        ('[smtp]\nallowed_networks = ["10.0.0.0/33"]\n', "smtp.allowed_networks"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, toml: str, key: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml, encoding="utf-8")
    for command in ("check-config", "serve"):
        done = subprocess.run(
            relay_command(command, "--config", str(config)),
            cwd=tmp_path,
            env=relay_env(),
            capture_output=True,
            timeout=30,
        )
        stderr = done.stderr.decode()
        assert done.returncode == 2, stderr
        assert key in stderr
        assert "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) == 1


def test_port_in_use_exits_2(tmp_path: Path, sink: tuple[SinkHandler, int]) -> None:
    _, sink_port = sink
    relay = start_relay(tmp_path, CONFIG.replace("SINK", str(sink_port)))
    try:
        clash = tmp_path / "clash"
        clash.mkdir()
        (clash / "relay.toml").write_text(
            (relay.workdir / "relay.toml").read_text(encoding="utf-8"), encoding="utf-8"
        )
        done = subprocess.run(
            relay_command("serve"), cwd=clash, env=relay_env(), capture_output=True, timeout=30
        )
        stderr = done.stderr.decode()
        assert done.returncode == 2, stderr
        assert "listen" in stderr and "Traceback" not in stderr
    finally:
        code, err = stop_relay(relay)
    assert code == 0, err


def test_long_lines_and_undeclared_8bit_relayed_unchanged(
    relay: RelayProcess, sink: tuple[SinkHandler, int]
) -> None:
    handler, _ = sink
    long_line = b"x" * 1500 + " caf\u00e9".encode()
    original = (
        b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: long\r\n"
        b"Message-ID: <long@example.com>\r\n\r\n" + long_line + b"\r\nend\r\n"
    )
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], original)  # no 8BITMIME
    [delivered] = handler.wait_for(1)
    assert delivered.data.endswith(original), "everything after the relay's Received header"
