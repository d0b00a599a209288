"""Building a copy: tokens that name the copy, the honeypot, tracking switched off."""

from __future__ import annotations

import re

from relay.core.config import Config, TrackingConfig, TrackingPolicy
from relay.core.models import Copy, Message, TrackingDecision
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from relay.delivery.copies import RewriteTemplates, build_copy, build_plan, own_base_urls
from relay.rewrite import IMAGE_ONLY_NOTE, prepare_template

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
    built = await build_copy(config(avoid_image_only=False), CODEC, copy, msg, HTML_MESSAGE)
    assert built.links == ("https://shop.example.com/a?x=1&y=2",)  # our own link is left alone
    assert b"https://track.example.org/c/already" in built.raw
    [click] = tokens(built.raw, "c")[:1]
    data = CODEC.verify(click.decode())
    assert (data.kind, data.copy_id, data.link_index) == ("click", 7, 0)
    assert data.url == "https://shop.example.com/a?x=1&y=2"
    [pixel] = re.findall(rb"https://track\.example\.org/o/([A-Za-z0-9_-]+)\.gif", built.raw)
    assert CODEC.verify(pixel.decode()).copy_id == 7


async def test_no_pixel_where_it_would_be_the_only_image_of_a_short_part() -> None:
    """avoid_image_only (the default): links tracked, no pixel, the reason in the notes."""
    msg = message(TrackingDecision(opens=True, clicks=True))
    copy = Copy(7, "m1", "b@example.net", ("b@example.net",), "queued")
    built = await build_copy(config(), CODEC, copy, msg, HTML_MESSAGE)
    assert b"/o/" not in built.raw
    assert built.links == ("https://shop.example.com/a?x=1&y=2",)
    [note] = built.notes
    assert note.startswith(IMAGE_ONLY_NOTE + " (HTML part at offset ")


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


def two_recipients() -> Message:
    return Message(
        "m2", "a@example.com", ("b@example.net", "c@example.net"), 0.0, "127.0.0.1", None,
        "a@example.com", "offer", "<m2@example.com>", TrackingDecision(opens=True, clicks=True),
    )  # fmt: skip


async def test_copies_of_one_message_share_its_scan_and_keep_their_own_tokens() -> None:
    msg = two_recipients()
    templates = RewriteTemplates()
    first = Copy(11, "m2", "b@example.net", ("b@example.net",), "queued")
    second = Copy(12, "m2", "c@example.net", ("c@example.net",), "queued")
    both = (first, second)
    plan = build_plan(config(), CODEC, second, msg)
    probe = RewriteTemplates()
    await build_copy(config(), CODEC, first, msg, HTML_MESSAGE, probe)
    assert probe.get("m2", HTML_MESSAGE, plan) is not None  # kept for the one further copy
    assert probe.get("m2", HTML_MESSAGE, plan) is None  # and for that one only
    built = [await build_copy(config(), CODEC, first, msg, HTML_MESSAGE, templates)]
    built.append(await build_copy(config(), CODEC, second, msg, HTML_MESSAGE, templates))
    assert templates.get("m2", HTML_MESSAGE, plan) is None  # dropped after the last copy
    alone = [await build_copy(config(), CODEC, c, msg, HTML_MESSAGE) for c in both]
    assert built == alone
    for copy, result in zip((first, second), built, strict=True):
        ours = [t for t in tokens(result.raw, "c") if t != b"already"]  # the link left alone
        assert ours and {CODEC.verify(t.decode()).copy_id for t in ours} == {copy.id}


async def test_a_message_with_one_copy_is_not_kept() -> None:
    templates = RewriteTemplates()
    msg = message(TrackingDecision(opens=True, clicks=True))
    copy = Copy(7, "m1", "b@example.net", ("b@example.net",), "queued")
    await build_copy(config(), CODEC, copy, msg, HTML_MESSAGE, templates)
    assert templates.get("m1", HTML_MESSAGE, build_plan(config(), CODEC, copy, msg)) is None


def test_templates_are_bounded_by_the_bytes_of_their_messages() -> None:
    plan = build_plan(config(), CODEC, Copy(1, "m", "b@x", ("b@x",), "queued"), two_recipients())
    templates = RewriteTemplates(max_bytes=2 * len(HTML_MESSAGE), max_message=len(HTML_MESSAGE))
    for name in ("a", "b", "c"):
        templates.put(name, prepare_template(HTML_MESSAGE, plan), uses=5)
    assert templates.get("a", HTML_MESSAGE, plan) is None  # the oldest made room
    assert templates.get("b", HTML_MESSAGE, plan) is not None
    assert templates.get("c", HTML_MESSAGE, plan) is not None
    bigger = HTML_MESSAGE + b"<p>more</p>\r\n"
    templates.put("big", prepare_template(bigger, plan), uses=5)
    assert templates.get("big", bigger, plan) is None  # over max_message: never kept
    assert templates.get("c", bigger, plan) is None  # other bytes under the same id: not used


def test_a_template_serves_the_further_copies_of_its_message_then_goes() -> None:
    plan = build_plan(config(), CODEC, Copy(1, "m", "b@x", ("b@x",), "queued"), two_recipients())
    templates = RewriteTemplates()
    template = prepare_template(HTML_MESSAGE, plan)
    templates.put("m", template, uses=2)
    assert templates.get("m", HTML_MESSAGE, plan) is template
    assert templates.get("m", HTML_MESSAGE, plan) is template
    assert templates.get("m", HTML_MESSAGE, plan) is None
    templates.put("m", template, uses=0)  # no further copy: not kept
    assert templates.get("m", HTML_MESSAGE, plan) is None
