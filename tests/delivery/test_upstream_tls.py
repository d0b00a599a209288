"""TLS to the upstream: implicit TLS, required and opportunistic STARTTLS, verification."""

from __future__ import annotations

from typing import Any

import pytest
from delivery.upstreams import SinkFactory, Tls, password_checker

from relay.core.config import ConfigError, UpstreamConfig
from relay.delivery.upstream import Upstream, open_upstream

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: tls\r\n\r\nhello\r\n"


def upstream_for(url: str, **kwargs: Any) -> Upstream:
    return open_upstream(UpstreamConfig(url=url, timeout=5.0, **kwargs), helo_name="relay.test")


async def send_one(upstream: Upstream) -> tuple[str, str]:
    outcome = await upstream.send("a@example.com", ["b@example.net"], MESSAGE)
    await upstream.close()
    return outcome.status, outcome.reply


async def test_smtps_with_ca_file(make_sink: SinkFactory, tls: Tls) -> None:
    handler, port = make_sink(ssl_context=tls.server_context)
    upstream = upstream_for(f"smtps://127.0.0.1:{port}", ca_file=str(tls.ca_file))
    assert (await send_one(upstream))[0] == "delivered"
    assert handler.messages[0].data == MESSAGE


async def test_required_starttls_with_auth(make_sink: SinkFactory, tls: Tls) -> None:
    handler, port = make_sink(
        tls_context=tls.server_context,
        require_starttls=True,
        authenticator=password_checker("relay", "pw"),
        auth_required=True,
    )
    upstream = upstream_for(
        f"smtp+starttls://localhost:{port}",
        ca_file=str(tls.ca_file),
        username="relay",
        password="pw",
    )
    assert (await send_one(upstream))[0] == "delivered"
    assert len(handler.messages) == 1


async def test_required_starttls_refused_when_not_offered(make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    upstream = upstream_for(f"smtp+starttls://127.0.0.1:{port}")
    status, reply = await send_one(upstream)
    assert status == "temporary"
    assert "STARTTLS" in reply
    assert handler.messages == []


@pytest.mark.parametrize("url", ["smtps://127.0.0.1:{port}", "smtp+starttls://127.0.0.1:{port}"])
async def test_unverifiable_certificate_is_temporary(
    make_sink: SinkFactory, tls: Tls, url: str
) -> None:
    if url.startswith("smtps"):
        handler, port = make_sink(ssl_context=tls.server_context)
    else:
        handler, port = make_sink(tls_context=tls.server_context, require_starttls=True)
    status, reply = await send_one(upstream_for(url.format(port=port)))  # system CAs only
    assert status == "temporary"
    assert "certificate" in reply.lower()
    assert handler.messages == []
    # The operator's escape hatch for a self-signed upstream.
    unverified = upstream_for(url.format(port=port), tls_verify=False)
    assert (await send_one(unverified))[0] == "delivered"


async def test_wrong_hostname_is_temporary(make_sink: SinkFactory, tls: Tls) -> None:
    # 127.0.0.2 is loopback too, but not a name on the certificate.
    _handler, port = make_sink(ssl_context=tls.server_context, hostname="127.0.0.2")
    upstream = upstream_for(f"smtps://127.0.0.2:{port}", ca_file=str(tls.ca_file))
    status, reply = await send_one(upstream)
    assert status == "temporary"
    assert "certificate" in reply.lower()


async def test_offered_starttls_is_verified_on_smtp(make_sink: SinkFactory, tls: Tls) -> None:
    """tls_verify = true means verified whenever TLS is used: a self-signed certificate on
    the STARTTLS an smtp:// upstream offers defers the copy, as for smtp+starttls://."""
    # require_starttls: the sink refuses MAIL in the clear, so delivery proves TLS was used.
    handler, port = make_sink(tls_context=tls.server_context, require_starttls=True)
    status, reply = await send_one(upstream_for(f"smtp://127.0.0.1:{port}"))  # system CAs
    assert status == "temporary"
    assert "certificate" in reply.lower()
    assert handler.messages == []
    trusted = upstream_for(f"smtp://localhost:{port}", ca_file=str(tls.ca_file))
    assert (await send_one(trusted))[0] == "delivered"
    assert len(handler.messages) == 1


async def test_opportunistic_tls_encrypts_without_checking(
    make_sink: SinkFactory, tls: Tls
) -> None:
    handler, port = make_sink(tls_context=tls.server_context, require_starttls=True)
    upstream = upstream_for(f"smtp://127.0.0.1:{port}", opportunistic_tls=True)
    assert (await send_one(upstream))[0] == "delivered"
    assert len(handler.messages) == 1


async def test_plain_smtp_upstream_without_starttls_still_delivers(
    make_sink: SinkFactory,
) -> None:
    handler, port = make_sink()  # offers no STARTTLS: smtp:// sends in the clear
    assert (await send_one(upstream_for(f"smtp://127.0.0.1:{port}")))[0] == "delivered"
    assert len(handler.messages) == 1


def test_unreadable_ca_file_names_the_key(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"upstream\.ca_file"):
        upstream_for("smtps://127.0.0.1:465", ca_file=str(tmp_path / "missing.pem"))
