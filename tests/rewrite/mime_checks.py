"""Oracles for the MIME rewriter tests, built on the email package (an independent parser).

check_rewrite compares input and output trees: same shape, same headers, same raw
payload for every leaf except rewritten HTML parts, whose decoded text must be
exactly what rewrite_html makes of the original decoded text.
"""

from __future__ import annotations

import email
import re
from email.message import Message
from email.policy import compat32

from support.html import rewrite_html

from relay.rewrite import RewritePlan, Rewritten, pixel_at, rewrite_message
from relay.rewrite.markup import tracking_snippet

PIXEL_URL = "https://t.test/o/pixel.gif"
TRACKED = re.compile(r"https://t\.test/c/(\d+)")


def tracking_url(index: int, url: str) -> str:
    return f"https://t.test/c/{index}"


PLAN = RewritePlan(opens=True, clicks=True, pixel_url=PIXEL_URL, link_url=tracking_url)
SNIPPET = tracking_snippet(PLAN)


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=compat32)


def html_text(part: Message) -> str:
    """Decoded HTML the way a mail client reads it."""
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    charset = part.get_content_charset() or "utf-8"
    charset = "utf-8" if charset in ("us-ascii", "ascii") else charset
    return data.decode(charset, "surrogateescape")


def unrewrite(text: str, links: tuple[str, ...]) -> str:
    """Drop the pixel and map tracking URLs back (valid for hrefs without entities)."""
    assert text.count(SNIPPET) == 1
    text = text.replace(SNIPPET, "")
    return TRACKED.sub(lambda m: links[int(m.group(1))], text)


def _leaves(message: Message) -> list[Message]:
    return [p for p in message.walk() if not p.is_multipart()]


def _shape(message: Message) -> list[tuple[str, object, object]]:
    return [(p.get_content_type(), p.preamble, p.epilogue) for p in message.walk()]


def _headers_without_cte(part: Message) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in part.items() if k.lower() != "content-transfer-encoding"]


def max_line(raw: bytes) -> int:
    return max(len(line.rstrip(b"\r")) for line in raw.split(b"\n"))


def check_rewrite(raw: bytes, result: Rewritten, plan: RewritePlan = PLAN) -> list[str]:
    """Assert everything but the rewritten HTML parts is intact; return the new HTML texts."""
    out = result.raw
    if out == raw:
        assert result.parts_rewritten == 0
        assert result.notes, "a message relayed untouched says why"
        return []
    before, after = parse(raw), parse(out)
    assert _shape(before) == _shape(after)
    for old_node, new_node in zip(before.walk(), after.walk(), strict=True):
        if old_node.is_multipart():
            assert list(old_node.items()) == list(new_node.items())
    if max_line(raw) <= 998:
        assert max_line(out) <= 998
    urls: list[str] = []
    index: dict[str, int] = {}

    def track(url: str) -> str:
        index.setdefault(url, len(urls))
        if len(urls) == index[url]:
            urls.append(url)
        return plan.link_url(index[url], url)

    rewritten: list[str] = []
    for old, new in zip(_leaves(before), _leaves(after), strict=True):
        if old._payload == new._payload:  # the raw text; get_payload() may decode
            assert [(k, str(v)) for k, v in old.items()] == [(k, str(v)) for k, v in new.items()]
            continue
        assert old.get_content_type() == "text/html"
        assert _headers_without_cte(old) == _headers_without_cte(new)
        source = html_text(old)
        size = len(old.get_payload(decode=True))
        expected = rewrite_html(source, plan, pixel_at(plan, size), track)
        assert html_text(new) == expected
        rewritten.append(expected)
    assert tuple(urls) == result.links
    assert len(rewritten) == result.parts_rewritten
    return rewritten


def rewrite_and_check(raw: bytes, plan: RewritePlan = PLAN) -> tuple[Rewritten, list[str]]:
    result = rewrite_message(raw, plan)
    return result, check_rewrite(raw, result, plan)


def assert_untouched(raw: bytes, note: str = "", plan: RewritePlan = PLAN) -> Rewritten:
    """The message is relayed byte for byte, no part rewritten, and a note says why (one
    that contains `note`)."""
    result = rewrite_message(raw, plan)
    assert result.raw == raw
    assert result.parts_rewritten == 0
    assert any(note in n for n in result.notes), result.notes
    return result
