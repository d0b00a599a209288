"""A message scanned once serves every copy: render(template, plan) for each recipient."""

from __future__ import annotations

from typing import Literal

from hypothesis import given
from hypothesis import strategies as st
from rewrite.mime_checks import check_rewrite
from rewrite.test_message_properties import messages

from relay.rewrite import RewritePlan, plan_shape, prepare_template, render, rewrite_message

Position = Literal["auto", "top", "bottom"]


def copy_plan(
    copy: int,
    opens: bool = True,
    clicks: bool = True,
    position: Position = "auto",
    honeypot: bool = False,
    long_every: int = 0,
    max_links: int = 1000,
    guard: bool = False,
) -> RewritePlan:
    """A copy's plan: its own URLs, some of different lengths, some left as they were
    (what build_plan does when a URL is too long for a token)."""

    def link_url(index: int, url: str) -> str:
        if long_every and index % long_every == 0:
            return url
        return f"https://t.test/c/{copy}-{index}-" + "x" * (copy * index % 7) + "&q='\"q"

    return RewritePlan(
        opens=opens,
        clicks=clicks,
        pixel_url=f"https://t.test/o/{copy}.gif?a=1&b='2'",
        link_url=link_url,
        pixel_position=position,
        honeypot_url=f"https://t.test/h/{copy}" if honeypot else None,
        max_links_per_part=max_links,
        guard_image_only=guard,
    )


shapes = st.fixed_dictionaries(
    {
        "opens": st.booleans(),
        "clicks": st.booleans(),
        "position": st.sampled_from(["auto", "top", "bottom"]),
        "honeypot": st.booleans(),
        "long_every": st.integers(0, 3),
        "max_links": st.sampled_from([1000, 0, 1, 2]),
        "guard": st.booleans(),
    }
)


@given(messages(), shapes, st.integers(1, 50), st.integers(51, 99))
def test_a_template_renders_every_copy_as_its_own_rewrite(
    raw: bytes, shape: dict[str, object], first: int, other: int
) -> None:
    """The template made for one copy holds nothing of that copy: another copy rendered
    from it is byte for byte the rewrite made for that copy alone."""
    plan_a = copy_plan(first, **shape)  # type: ignore[arg-type]
    plan_b = copy_plan(other, **shape)  # type: ignore[arg-type]
    template = prepare_template(raw, plan_a)
    assert render(template, plan_b) == render(prepare_template(raw, plan_b), plan_b)
    assert render(template, plan_a) == rewrite_message(raw, plan_a)


@given(messages(), st.integers(1, 99))
def test_a_plan_of_another_shape_is_not_rendered_from_the_template(raw: bytes, copy: int) -> None:
    opens_only = copy_plan(copy, clicks=False)
    full = copy_plan(copy, honeypot=True)
    assert plan_shape(opens_only) != plan_shape(full)
    assert render(prepare_template(raw, opens_only), full) == rewrite_message(raw, full)


HTML = (
    b"From: a@example.com\r\nSubject: quotes\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><p title="0">1 pixel</p><a href="https://a.example/0">one</a> '
    b"<a href='https://b.example/?x=1&amp;y'>two</a></body></html>\r\n"
)


def test_each_copy_gets_its_own_urls_escaped_for_each_quote() -> None:
    """The stand-ins are filled with the copy's URLs, escaped for the link's own quotes;
    nothing of the copy the template was made for remains."""
    first, second = copy_plan(3, honeypot=True), copy_plan(4, honeypot=True)
    result = render(prepare_template(HTML, first), second)
    check_rewrite(HTML, result, second)
    assert result.links == ("https://a.example/0", "https://b.example/?x=1&y")
    assert b'<p title="0">1 pixel</p>' in result.raw
    assert b'href="https://t.test/c/4-0-&amp;q=\'&quot;q"' in result.raw
    assert b"href='https://t.test/c/4-1-xxxx&amp;q=&#39;&quot;q'" in result.raw
    assert b"src=\"https://t.test/o/4.gif?a=1&amp;b='2'\"" in result.raw
    assert b"https://t.test/h/4" in result.raw
    assert b"t.test/c/3-" not in result.raw and b"t.test/o/3" not in result.raw
    assert b"\x00" not in result.raw


def test_a_message_left_alone_is_left_alone_for_every_copy() -> None:
    signed = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
        b' boundary="s"\r\n\r\n--s\r\nContent-Type: text/html\r\n\r\n<a href="https://x.example/">x</a>'
        b"\r\n--s--\r\n"
    )
    template = prepare_template(signed, copy_plan(1))
    for copy in (1, 2):
        result = render(template, copy_plan(copy))
        assert result.raw == signed and result.notes == ("signed or encrypted",)
