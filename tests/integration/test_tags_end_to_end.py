"""Tags on the whole road: smtplib -> `relay serve` -> an aiosmtpd sink, then the API.

The sink must receive no tag header (SPEC 8: stripped before relaying, like the
control headers), and the admin API must find the message by its tags.
"""

from __future__ import annotations

import email
import email.policy
import smtplib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from support.processes import RelayProcess, SinkHandler, relay_toml, start_relay, stop_relay

TAG_HEADERS = (
    "X-Tag",
    "X-Mailgun-Tag",
    "X-PM-Tag",
    "X-MC-Tags",
    "X-SES-MESSAGE-TAGS",
    "X-SMTPAPI",
)
MESSAGE = (
    "From: Alice <alice@example.com>\r\n"
    "To: bob@example.net\r\n"
    "Subject: Spring launch\r\n"
    "X-Tag: Launch, spring-2026\r\n"
    "X-Mailgun-Tag: newsletter\r\n"
    "X-PM-Tag: welcome\r\n"
    "X-MC-Tags: mc\r\n"
    "X-SES-MESSAGE-TAGS: campaign=spring\r\n"
    'X-SMTPAPI: {"category": "sendgrid"}\r\n'
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    '<p>Hello <a href="https://example.com/launch">see it</a></p>\r\n'
)


@pytest.fixture
def relay(tmp_path: Path, sink: tuple[SinkHandler, int]) -> Iterator[RelayProcess]:
    _, sink_port = sink
    process = start_relay(tmp_path, relay_toml(f"smtp://127.0.0.1:{sink_port}"))
    yield process
    code, err = stop_relay(process)
    assert code == 0, err


async def test_tags_reach_the_api_and_never_the_upstream(
    relay: RelayProcess, sink: tuple[SinkHandler, int]
) -> None:
    handler, _ = sink
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], MESSAGE.encode())
    [delivered] = handler.wait_for(1)
    relayed = email.message_from_bytes(delivered.data, policy=email.policy.compat32)
    for name in TAG_HEADERS:
        assert relayed[name] is None, f"{name} must be stripped"
    assert relayed["Subject"] == "Spring launch"

    auth = {"Authorization": f"Bearer {relay.admin_token}"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.get(f"{relay.admin_url}/api/messages?tag=LAUNCH") as answer:
            assert answer.status == 200
            [summary] = (await answer.json())["messages"]
        assert sorted(summary["tags"]) == sorted(
            ["Launch", "spring-2026", "newsletter", "welcome", "mc", "campaign:spring", "sendgrid"]
        )
        async with http.get(f"{relay.admin_url}/api/tags/campaign:spring") as answer:
            report = await answer.json()
        assert (report["messages"], report["recipients"]) == (1, 1)
        async with http.get(f"{relay.admin_url}/api/tags") as answer:
            listed = {t["tag"] for t in (await answer.json())["tags"]}
        assert "sendgrid" in listed and "Launch" in listed
