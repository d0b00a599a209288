"""No pixel where it would be the only image in a short HTML part (guard_image_only).

Spam filters read an HTML part with an <img> in at most 3,200 characters of
HTML as image-only (SpamAssassin's HTML_IMAGE_ONLY_*). The rewriter leaves the
pixel out there, still tracks the links, and says why in the copy's notes.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from rewrite.mime_checks import assert_untouched

from relay.rewrite import IMAGE_ONLY_CHARS, IMAGE_ONLY_NOTE, RewritePlan, rewrite_message

PLAN = RewritePlan(
    opens=True,
    clicks=True,
    pixel_url="https://t.example.com/o/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.gif",
    link_url=lambda index, url: f"https://t.example.com/c/{index:04d}BBBBBBBBBBBBBBBBBBBB",
    guard_image_only=True,
)
HEAD = (
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Bob, see our site.\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
)


def message(html: str) -> bytes:
    return HEAD + html.encode() + b"\r\n--b--\r\n"


SHORT = '<div dir="ltr">Hi Bob, see <a href="https://example.com/x">our site</a>.</div>'


def test_a_short_part_without_images_gets_links_but_no_pixel() -> None:
    raw = message(SHORT)
    done = rewrite_message(raw, PLAN)
    assert b"/o/" not in done.raw
    assert done.links == ("https://example.com/x",)
    assert b"https://t.example.com/c/0000" in done.raw
    [note] = done.notes
    assert note.startswith(f"{IMAGE_ONLY_NOTE} (HTML part at offset ")
    assert done.raw == raw.replace(b"https://example.com/x", PLAN.link_url(0, "").encode())


def test_opens_only_leaves_such_a_message_as_it_came_and_says_why() -> None:
    assert_untouched(message(SHORT), IMAGE_ONLY_NOTE, replace(PLAN, clicks=False))


def test_without_the_guard_the_pixel_is_added() -> None:
    done = rewrite_message(message(SHORT), replace(PLAN, guard_image_only=False))
    assert b"https://t.example.com/o/" in done.raw
    assert done.notes == ()


@pytest.mark.parametrize(
    "image",
    ['<img src="cid:logo" width="120" height="40" alt="Logo">', "<IMG\nsrc=https://x.test/a.png>"],
)
def test_a_part_with_an_image_of_its_own_keeps_the_pixel(image: str) -> None:
    done = rewrite_message(message(SHORT + image), PLAN)
    assert b"https://t.example.com/o/" in done.raw
    assert done.notes == ()


@pytest.mark.parametrize(
    "hidden",
    [
        '<!--[if mso]><img src="https://x.test/a.png"><![endif]-->',
        '<!-- <img src="https://x.test/a.png"> -->',
        "<style>img{border:0}</style><title><img></title>",
    ],
)
def test_an_image_filters_do_not_see_does_not_count(hidden: str) -> None:
    done = rewrite_message(message(SHORT + hidden), PLAN)
    assert b"https://t.example.com/o/" not in done.raw


def test_a_part_long_enough_keeps_the_pixel() -> None:
    filler = "<p>" + "Plain words of an ordinary letter. " * 100 + "</p>\r\n"
    assert len(SHORT + filler) > IMAGE_ONLY_CHARS
    done = rewrite_message(message(SHORT + filler), PLAN)
    assert b"https://t.example.com/o/" in done.raw
    assert done.notes == ()


def test_the_limit_counts_the_part_as_relayed_with_crlf_as_one() -> None:
    """Just over the limit with the pixel: pixel; just under: none (CRLF counts once)."""
    bare = rewrite_message(message(SHORT), replace(PLAN, guard_image_only=False))
    pixel_and_links = len(bare.raw) - len(message(SHORT))
    for extra, expected in ((1, True), (0, False)):
        size = IMAGE_ONLY_CHARS - len(SHORT) - pixel_and_links + extra
        padding = "x\r\n" * (size // 2) + "x" * (size % 2)  # "x\r\n" counts 2
        done = rewrite_message(message(SHORT + padding), PLAN)
        assert (b"https://t.example.com/o/" in done.raw) is expected, extra
