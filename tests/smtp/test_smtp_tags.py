"""Tags through the real SMTP front: stored with the message, stripped from what is relayed."""

from __future__ import annotations

import smtplib

from smtp.running import StartRelay, in_thread

from relay.rewrite.headers import header_values
from relay.smtp.tags import TAG_HEADERS

TAGGED = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Spring sale\r\n"
    b"X-Tag: Spring, newsletter\r\n"
    b"X-Mailgun-Tag: mailgun-tag\r\n"
    b"X-PM-Tag: postmark-tag\r\n"
    b"X-MC-Tags: mc1, mc2\r\n"
    b"X-SES-MESSAGE-TAGS: campaign=spring\r\n"
    b'X-SMTPAPI: {"category": ["sendgrid"]}\r\n'
    b"X-Keep: me\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello</p>\r\n"
)
ALL_TAGS = (
    "Spring",
    "newsletter",
    "mc1",
    "mc2",
    "mailgun-tag",
    "postmark-tag",
    "campaign:spring",
    "sendgrid",
)


def send(port: int, data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], data)


async def test_tags_are_stored_and_their_headers_stripped(start_relay: StartRelay) -> None:
    relay = await start_relay()
    await in_thread(send, relay.port, TAGGED)
    [(msg, raw, _)] = await relay.spooled()
    assert all(not header_values(raw, name) for name in TAG_HEADERS)
    assert header_values(raw, "x-keep") == ["me"]
    page, _ = await relay.store.list_messages()
    assert page[0].message.id == msg.id
    assert page[0].message.tags == tuple(sorted(ALL_TAGS, key=str.casefold))


async def test_pass_through_keeps_the_services_tag_headers(start_relay: StartRelay) -> None:
    relay = await start_relay(pass_through_tracking_headers=True)
    await in_thread(send, relay.port, TAGGED)
    [(_, raw, _)] = await relay.spooled()
    assert not header_values(raw, "x-tag")
    assert header_values(raw, "x-mailgun-tag") == ["mailgun-tag"]
    assert header_values(raw, "x-smtpapi") == ['{"category": ["sendgrid"]}']
    page, _ = await relay.store.list_messages()
    assert set(page[0].message.tags) == set(ALL_TAGS)
