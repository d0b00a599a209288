"""The rewriter's fast paths give exactly what the general paths they stand in for give."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from support.html import html_edits, rewrite_html

from relay.rewrite import html
from relay.rewrite.patterns import SKIP
from relay.rewrite.transfer import encode_qp, encode_runs

# Bytes that stress quoted-printable: escapes, trailing blanks, dots, bare CR/LF, 8-bit, NUL.
QP_PIECES = [b"x", b"=", b" ", b"\t", b".", b"\r\n", b"\n", b"\r", b"\xe9", b"\x00", b"y" * 80]
runs = st.lists(st.lists(st.sampled_from(QP_PIECES), max_size=12).map(b"".join), max_size=5)


def encoded_alone(data: bytes, eol: bytes, line_ended: bool) -> bytes:
    """One run as QP lines by itself; a soft break at the end when the run it replaces
    ended a line, so the next original line still starts a line."""
    if not line_ended or data.endswith(eol):
        return encode_qp(data, eol)
    return encode_qp(data + b"!", eol)[:-1] + b"=" + eol


@given(runs, st.data(), st.sampled_from([b"\r\n", b"\n"]))
@example([b"a" * 75, b"b"], None, b"\r\n")
@example([b"a \n", b"c\x00"], None, b"\n")
def test_joint_qp_check_gives_each_runs_own_encoding(
    data: list[bytes], draw: Any, eol: bytes
) -> None:
    ended = [draw.draw(st.booleans()) for _ in data] if draw is not None else [True] * len(data)
    assert encode_runs(data, ended, eol) == [
        encoded_alone(run, eol, end) for run, end in zip(data, ended, strict=True)
    ]


LINK_PIECES = [
    '<a href="https://x.example/a?b=1&amp;c=2">',
    '<A HREF="https://x.example/B">',
    '<a  href = "https://x.example/c" class="x" target=_blank>',
    '<a href="https://x.example/d" data-notrack>',
    '<a href="https://x.example/e" clicktracking=off>',
    '<a href="https://x.example/f" data-x="no-track">',
    '<a href="  https://x.example/g\n">',
    '<a href="mailto:a@b.example">',
    '<a href="https://t.test/c/own">',
    '<a href="https://x.example/h" title="a>b">',
    "</a>",
    "</A>",
    "</a >",
    "text",
    " ",
    "www.example.com",
    "&nbsp; www.example.com",
    "https://x.example/",
    "&amp;",
    "<b>",
    "<!--[if mso]>",
    "<![endif]-->",
    "\n",
]
link_html = st.lists(st.sampled_from(LINK_PIECES), max_size=20).map("".join)
# The scanner's skip pattern with its whole-link group never matching: every link then
# goes tag by tag.
NO_WHOLE_LINK = re.compile(SKIP.pattern + "((?!))?", SKIP.flags)


@given(
    source=link_html,
    skip_bare=st.booleans(),
    own=st.sampled_from([(), ("https://t.test/",)]),
)
def test_whole_link_path_agrees_with_the_tag_by_tag_path(
    source: str, skip_bare: bool, own: tuple[str, ...], plan_factory: Any
) -> None:
    plan = plan_factory(skip_bare_url_links=skip_bare, own_base_urls=own)
    urls: list[str] = []
    fast = html_edits(source, plan, "bottom", lambda u: urls.append(u) or f"T{len(urls)}")
    fast_urls, urls = urls, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(html, "SKIP_TO_LINK", NO_WHOLE_LINK)
        general = html_edits(source, plan, "bottom", lambda u: urls.append(u) or f"T{len(urls)}")
    assert (fast, fast_urls) == (general, urls)


def test_tag_names_are_ascii_letters(plan_factory: Any, recorder: Any) -> None:
    """'<ſ' is text to the tokenizer, so the link inside the "attribute" is a link."""
    source = '<ſpan title="<a href=https://x.example/a>link</a>">'
    output = rewrite_html(source, plan_factory(), "bottom", recorder)
    assert recorder.urls == ["https://x.example/a"]
    assert output == source.replace("https://x.example/a", '"https://t.test/c/0"')
