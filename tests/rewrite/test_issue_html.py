"""Issue 3, items 4 and 5 through rewrite_message: HTML forms, the 5 MB part, the pixel's place.

rewrite_html is proved form by form in test_html.py (quoting styles, case,
whitespace around '=', first-href-wins, opt-outs, raw-text elements, unterminated
constructs, 5 MB of adversarial markup); here each listed form goes through a
whole message, so the link registry, the codecs and the splice are in the path.
"""

from __future__ import annotations

import base64
import quopri
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from rewrite.byte_checks import assert_only_html_bodies_changed
from rewrite.mime_checks import PLAN, SNIPPET, html_text, parse, rewrite_and_check
from rewrite.test_mime import leaf, message

from relay.rewrite import AUTO_TOP_THRESHOLD, Rewritten, rewrite_message

TRACKED = "https://t.test/c/"


def rewritten_html(html: str, cte: str = "8bit") -> tuple[Rewritten, str]:
    data = html.encode()
    body = {"quoted-printable": quopri.encodestring(data), "base64": base64.encodebytes(data)}
    raw = message(leaf("text/html; charset=utf-8", body.get(cte, data), cte))
    result, texts = rewrite_and_check(raw)
    assert_only_html_bodies_changed(raw, result)
    return result, texts[0] if texts else html


# Item 4: each form and the URLs it yields (an empty tuple: nothing is a link).
FORMS = [
    ('<A HREF="https://x.com/up">go</A>', ("https://x.com/up",)),
    ("<a href='https://x.com/single'>go</a>", ("https://x.com/single",)),
    ("<a href=https://x.com/bare>go</a>", ("https://x.com/bare",)),
    ('<a href = "https://x.com/ws" >go</a>', ("https://x.com/ws",)),
    ('<a href="https://x.com/e?a=1&amp;b=2">go</a>', ("https://x.com/e?a=1&b=2",)),
    ('<a href="&#x68;ttps://x.com/&#104;ex">go</a>', ("https://x.com/hex",)),
    ('<a href=" https://x.com/a b ">go</a>', ("https://x.com/a b",)),
    ('<a href="https://x.com/\n  nl">go</a>', ("https://x.com/  nl",)),
    ('<a name="top">no href</a><a>bare</a>', ()),
    ('<map><area shape="rect" href="https://x.com/area" alt="x"></map>', ("https://x.com/area",)),
    ('<base href="https://x.com/"><a href="rel.html">rel</a>', ()),
    ('<!-- <a href="https://x.com/comment">c</a> -->', ()),
    ("<script>var a = '<a href=\"https://x.com/js\">';</script>", ()),
    ('<style>a[href="https://x.com/css"] {}</style>', ()),
    ('<![CDATA[<a href="https://x.com/cdata">x</a>]]>', ()),
    ('<p><a href="https://x.com/unclosed">go<p>more', ("https://x.com/unclosed",)),
    ('<a href="https://x.com/a">go</a><a href="https://x.com/a">again</a>', ("https://x.com/a",)),
]


@pytest.mark.parametrize(("form", "links"), FORMS)
@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_html_forms(form: str, links: tuple[str, ...], cte: str) -> None:
    html = f"<html><body>{form}</body></html>"
    result, text = rewritten_html(html, cte)
    assert result.links == links
    assert text.count(TRACKED) == (form.lower().count("href") if links else 0)


def test_vml_button_and_its_anchor_share_one_tracking_url() -> None:
    html = (
        "<html><body>"
        '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
        'href="https://x.com/buy?a=1&amp;b=2" arcsize="10%"><center>Buy</center>'
        "</v:roundrect><![endif]-->"
        '<!--[if !mso]><!-- --><a href="https://x.com/buy?a=1&b=2">Buy</a><!--<![endif]-->'
        "</body></html>"
    )
    result, text = rewritten_html(html)
    assert result.links == ("https://x.com/buy?a=1&b=2",)
    assert text.count(f'href="{TRACKED}0"') == 2 and f"{TRACKED}1" not in text


def test_several_body_ends_and_no_body() -> None:
    _, text = rewritten_html("<body><p>a</p></body><p>b</p></body>\n")
    assert text == f"<body><p>a</p></body><p>b</p>{SNIPPET}</body>\r\n"
    _, bare = rewritten_html('<p>fragment <a href="https://x.com/f">f</a></p>\n')
    assert bare.endswith(f"</a></p>{SNIPPET}\r\n")


def profiled_calls(work: Callable[[], Any]) -> int:
    """Python and C calls made by work: a measure of work that no clock disturbs."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        count += 1

    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
    return count


def big_html(megabytes: int) -> str:
    link = '<tr><td><a href="https://x.com/p{}">Produkt {}</a> – Grüße &amp; mehr</td></tr>\n'
    text = "<tr><td>Ein ganz gewöhnlicher Absatz, der nichts verlinkt &amp; nur Platz nimmt.</td>\n"
    rows = (
        link.format(i // 10 % 500, i) if i % 10 == 0 else text for i in range(megabytes * 14_000)
    )
    return "<html><body><table>" + "".join(rows) + "</table></body></html>"


@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_five_megabyte_part_is_linear(cte: str, time_guard: Any) -> None:
    """5x the input may cost ~5x the calls (not 25x); the guard only stops a hang."""
    calls = {}
    for megabytes in (1, 5):
        data = big_html(megabytes).encode()
        body = {"quoted-printable": quopri.encodestring(data), "base64": base64.encodebytes(data)}
        raw = message(leaf("text/html; charset=utf-8", body.get(cte, data), cte))
        assert len(data) >= megabytes * 1_000_000
        with time_guard(60):
            calls[megabytes] = profiled_calls(lambda raw=raw: rewrite_message(raw, PLAN))
            result = rewrite_message(raw, PLAN)
        assert result.parts_rewritten == 1 and len(result.links) == 500
    assert calls[5] <= 6 * calls[1]


# Item 5: where the pixel goes (bottom: before the last </body>; top: right after <body ...>;
# auto: bottom unless the decoded part is over ~100 KB). Its markup (1x1, border 0, alt="",
# display:block): test_html.py::test_pixel_markup; more placements: ::PIXEL_CASES.
def _filler(size: int) -> str:
    head, tail = "<html><BODY class=a style='margin:0'>", "</body></html>"
    return head + "x" * (size - len(head) - len(tail)) + tail


PLACEMENTS = [
    ("bottom", "8bit", _filler(2000), "bottom"),
    ("top", "8bit", _filler(2000), "top"),
    ("auto", "8bit", _filler(AUTO_TOP_THRESHOLD), "bottom"),
    ("auto", "8bit", _filler(AUTO_TOP_THRESHOLD + 1), "top"),
    ("auto", "base64", _filler(90_000), "bottom"),  # 120 KB encoded: the decoded size counts
    ("auto", "quoted-printable", _filler(AUTO_TOP_THRESHOLD + 1), "top"),
    ("bottom", "8bit", _filler(AUTO_TOP_THRESHOLD * 3), "bottom"),  # explicit beats size
]


@pytest.mark.parametrize(("position", "cte", "html", "where"), PLACEMENTS)
def test_pixel_placement(position: Any, cte: str, html: str, where: str) -> None:
    data = html.encode()
    body = {"quoted-printable": quopri.encodestring(data), "base64": base64.encodebytes(data)}
    raw = message(leaf("text/html; charset=utf-8", body.get(cte, data), cte))
    plan = replace(PLAN, pixel_position=position)
    result = rewrite_message(raw, plan)
    assert_only_html_bodies_changed(raw, result)
    text = html_text(parse(result.raw))
    body_tag = "<html><BODY class=a style='margin:0'>"
    expected = (
        html.replace(body_tag, body_tag + SNIPPET)
        if where == "top"
        else html.replace("</body></html>", SNIPPET + "</body></html>")
    )
    assert text == expected
    assert 'width="1" height="1" alt="" border="0"' in SNIPPET
