"""Building a copy: tokens that name the copy, the honeypot, tracking switched off."""

from __future__ import annotations

import re

from relay.core.config import Config, TrackingConfig, TrackingPolicy
from relay.core.models import Copy, Message, TrackingDecision
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from relay.delivery.copies import build_copy, own_base_urls

HTML_MESSAGE = (
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: offer\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><p><a href="https://shop.example.com/a?x=1&amp;y=2">shop</a>\r\n'
    b'<a href="https://track.example.org/c/already">ours</a></p></body></html>\r\n'
)
CODEC = TokenCodec(["test-key"])


def message(decision: TrackingDecision) -> Message:
    return Message(
        "m1", "a@example.com", ("b@example.net",), 0.0, "127.0.0.1", None,
        "a@example.com", "offer", "<m1@example.com>", decision,
    )  # fmt: skip


def config(**tracking: object) -> Config:
    base = {"base_url": "https://track.example.org", **tracking}
    return Config(tracking=TrackingConfig(**base))  # type: ignore[arg-type]


def tokens(raw: bytes, kind: str) -> list[bytes]:
    return re.findall(rb"/" + kind.encode() + rb"/([A-Za-z0-9_-]+)", raw)


async def test_tokens_name_the_copy_and_the_original_url() -> None:
    msg = message(TrackingDecision(opens=True, clicks=True))
    copy = Copy(7, "m1", "b@example.net", ("b@example.net",), "queued")
    built = await build_copy(config(), CODEC, copy, msg, HTML_MESSAGE)
    assert built.links == ("https://shop.example.com/a?x=1&y=2",)  # our own link is left alone
    assert b"https://track.example.org/c/already" in built.raw
    [click] = tokens(built.raw, "c")[:1]
    data = CODEC.verify(click.decode())
    assert (data.kind, data.copy_id, data.link_index) == ("click", 7, 0)
    assert data.url == "https://shop.example.com/a?x=1&y=2"
    [pixel] = re.findall(rb"https://track\.example\.org/o/([A-Za-z0-9_-]+)\.gif", built.raw)
    assert CODEC.verify(pixel.decode()).copy_id == 7


async def test_policy_base_url_and_honeypot() -> None:
    decision = TrackingDecision(opens=False, clicks=True, base_url="https://t.sales.example/")
    policy = TrackingPolicy(match="*@example.com", base_url="https://t.sales.example")
    cfg = config(honeypot=True, policy=(policy,))
    assert own_base_urls(cfg) == ("https://track.example.org", "https://t.sales.example")
    copy = Copy(9, "m1", "b@example.net", ("b@example.net",), "queued")
    built = await build_copy(cfg, CODEC, copy, message(decision), HTML_MESSAGE)
    assert b"/o/" not in built.raw  # opens off: no pixel
    clicks = re.findall(rb"https://t\.sales\.example/c/([A-Za-z0-9_-]+)", built.raw)
    by_index = {d.link_index: d for d in (CODEC.verify(t.decode()) for t in clicks)}
    assert set(by_index) == {0, HONEYPOT_LINK_INDEX}
    honeypot = by_index[HONEYPOT_LINK_INDEX]
    assert (honeypot.copy_id, honeypot.url) == (9, "https://t.sales.example/")
    assert built.links == ("https://shop.example.com/a?x=1&y=2",)  # the honeypot is not a link


async def test_tracking_off_relays_the_bytes_untouched() -> None:
    msg = message(TrackingDecision(opens=False, clicks=False))
    copy = Copy(1, "m1", None, ("b@example.net", "c@example.net"), "queued")
    built = await build_copy(config(), CODEC, copy, msg, HTML_MESSAGE)
    assert built.raw == HTML_MESSAGE
    assert built.links == ()
