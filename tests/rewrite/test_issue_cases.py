"""Issue 3, items 2-5: every listed charset, encoding, structure, HTML form and pixel place.

Cases already proved elsewhere are named in a comment, not repeated. Each table
asserts what a reader sees: the decoded part after rewriting (with the pixel
removed and tracking links mapped back it is the original), the exact
Content-Transfer-Encoding, and byte-identity of everything that is not an HTML body.
"""

from __future__ import annotations

import base64
import quopri

import pytest
from rewrite import mime_checks
from rewrite.byte_checks import assert_only_html_bodies_changed
from rewrite.mime_checks import assert_untouched, max_line, unrewrite
from rewrite.test_mime import HTML, leaf, message, multipart
from support.headers import split_head

from relay.rewrite import Rewritten
from relay.rewrite.headers import header_values


def rewrite_and_check(raw: bytes) -> tuple[Rewritten, list[str]]:
    """Both oracles: the email package's view and the raw bytes."""
    result, texts = mime_checks.rewrite_and_check(raw)
    assert_only_html_bodies_changed(raw, result)
    return result, texts


def html_part(raw: bytes) -> bytes:
    """The raw bytes (head and body) of the first text/html part."""
    start = raw.index(b"Content-Type: text/html")
    return raw[start:]


def cte_of_html(raw: bytes) -> list[str]:
    return header_values(html_part(raw), "Content-Transfer-Encoding")


# Item 2, charsets. utf-8, iso-8859-1, windows-1252, iso-2022-jp, shift_jis, euc-kr,
# gb2312, koi8-r in QP/base64/8bit: test_mime.py::test_charsets_round_trip; invalid
# utf-8 bytes: ::test_invalid_utf8_bytes_survive; unknown label: ::test_unknown_charset_left_alone.
MORE_CHARSETS = [
    ("iso-8859-15", "Prix: 10 €, Œuvre, œuf, Ÿ", "quoted-printable"),
    ("iso-8859-15", "Prix: 10 € Œuvre", "8bit"),
    ("gbk", "你好，世界 镕 囧", "base64"),
    ("gbk", "你好，世界 镕", "8bit"),
    ("gb2312", "你好世界", "quoted-printable"),
    ("koi8-r", "Привет, мир", "7bit"),  # a wrong CTE label: 8-bit octets under 7bit
    ("iso-2022-jp", "こんにちは世界", "7bit"),  # the usual way it is sent: 7bit escapes
    ("windows-1252", "“Quotes” – dash €", "base64"),
]


@pytest.mark.parametrize(("charset", "sample", "cte"), MORE_CHARSETS)
def test_part_keeps_charset_and_encoding(charset: str, sample: str, cte: str) -> None:
    html = HTML.replace("Hello", sample)
    data = html.encode(charset)
    body = {"quoted-printable": quopri.encodestring(data), "base64": base64.encodebytes(data)}
    raw = message(leaf(f"text/html; charset={charset}", body.get(cte, data), cte))
    result, texts = rewrite_and_check(raw)
    assert result.parts_rewritten == 1
    assert unrewrite(texts[0], result.links) == html
    assert cte_of_html(result.raw) == [cte]
    assert header_values(html_part(result.raw), "Content-Type") == [f"text/html; charset={charset}"]


# Wrong or missing labels: the octets the sender wrote come out unchanged around the edits.
WRONG_LABELS = [
    ("iso-8859-1", "Grüße 你好".encode()),  # utf-8 text labelled latin-1
    ("utf-8", "“Quotes” €".encode("cp1252")),  # cp1252 labelled utf-8: invalid utf-8
    ("us-ascii", "Grüße".encode()),  # 8-bit text labelled ascii
    (None, "Grüße, ça va".encode("latin-1")),  # no charset parameter at all
    ("koi8-r", "Grüße 你好".encode()),  # any octet is koi8-r: decodes to nonsense, kept
]


@pytest.mark.parametrize(("charset", "octets"), WRONG_LABELS)
def test_wrong_or_missing_label_keeps_the_octets(charset: str | None, octets: bytes) -> None:
    ctype = f"text/html; charset={charset}" if charset else "text/html"
    html = HTML.encode().replace(b"Hello", octets)
    raw = message(leaf(ctype, html, "8bit"))
    result, _ = rewrite_and_check(raw)
    assert result.parts_rewritten == 1
    assert octets in result.raw


# Undecodable bytes in a strict codec: the part is relayed as it came, with the reason.
UNDECODABLE = [
    ("euc-kr", b"\xb0\xa1\xff\xff"),
    ("gb2312", b"\xc4\xe3\xff"),
    ("iso-2022-jp", b"\x1b$B\xff\xfe\x1b(B"),
    ("shift_jis", b"\x82\xff\x81"),
]


@pytest.mark.parametrize(("charset", "octets"), UNDECODABLE)
def test_undecodable_bytes_leave_the_part_alone(charset: str, octets: bytes) -> None:
    html = HTML.encode().replace(b"Hello", octets)
    assert_untouched(message(leaf(f"text/html; charset={charset}", html, "8bit")), "undecodable")


def test_utf16_label_with_nul_bytes_left_alone() -> None:
    raw = message(leaf("text/html; charset=utf-16", HTML.encode("utf-16"), "8bit"))
    assert_untouched(raw, "NUL")


# Item 2, encodings. 7bit/8bit/QP/base64 x CRLF/LF: test_mime.py::
# test_alternative_html_in_each_transfer_encoding; base64 width 64:
# ::test_base64_keeps_line_length_and_tail; 7bit or no CTE over 998:
# ::test_long_7bit_line_switches_to_qp.
QP_BODY = (
    b"<html><body><p>caf=c3=a9 =E2=82=AC</p>\n"
    b'<p><a class=3D"btn" href=3D"https://shop.exa=\n'
    b'mple.com/a?x=3D1&amp;y=3D2" title=3D"a=3Db">Shop</a></p>\n'
    b"<p>soft=\nbreak kept</p></body></html>\n"
)


def test_qp_soft_breaks_and_escaped_equals() -> None:
    raw = message(leaf("text/html; charset=utf-8", QP_BODY, "quoted-printable"))
    result, texts = rewrite_and_check(raw)
    assert result.links == ("https://shop.example.com/a?x=1&y=2",)
    assert cte_of_html(result.raw) == ["quoted-printable"]
    assert 'class="btn" href="https://t.test/c/0" title="a=b"' in texts[0]
    body = split_head(html_part(result.raw))[1]
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    # lines no edit touched keep their own bytes (lower-case hex, the soft break)
    assert body.startswith(b"<html><body><p>caf=c3=a9 =E2=82=AC</p>\r\n")
    assert b"<p>soft=\r\nbreak kept</p>" in body


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
@pytest.mark.parametrize("width", [76, 72, 60, 4])
def test_base64_line_length_kept(width: int, eol: bytes) -> None:
    flat = base64.b64encode((HTML * 4).encode())
    body = eol.join(flat[i : i + width] for i in range(0, len(flat), width)) + eol
    raw = message(leaf("text/html; charset=utf-8", body.replace(eol, b"\n"), "base64"))
    raw = raw if eol == b"\r\n" else raw.replace(b"\r\n", b"\n")
    result, _ = rewrite_and_check(raw)
    new_body = split_head(html_part(result.raw))[1]
    lines = new_body.split(eol)
    assert {len(line) for line in lines[:-2]} == {width} and lines[-1] == b""
    assert cte_of_html(result.raw) == ["base64"]


LONG_LINES = [
    ("8bit", "Grüße " + "wörd " * 196),  # just under 998 octets, pushed over by the link
    ("8bit", "x" * 3000),  # already over 998 on arrival
    ("7bit", "word " * 198),
    (None, "x" * 1200),
]


@pytest.mark.parametrize(("cte", "text"), LONG_LINES)
def test_long_line_switches_to_qp_with_the_header(cte: str | None, text: str) -> None:
    html = f'<p>{text}<a href="https://example.com/long">x</a></p>'
    raw = message(leaf("text/html; charset=utf-8", html.encode(), cte))
    result, texts = rewrite_and_check(raw)
    assert unrewrite(texts[0], result.links) == html
    assert cte_of_html(result.raw) == ["quoted-printable"]
    assert b"\r\nContent-Transfer-Encoding: quoted-printable\r\n" in html_part(result.raw)
    assert max_line(result.raw) <= 76 < max_line(raw)


# Item 3, structures. alternative/related/mixed attachment/rfc822 alone/HTML-only/
# text-only/signed/encrypted/pkcs7 in mixed/missing or broken boundaries/preamble and
# epilogue/CRLF and LF: test_mime.py (one test each, named after the case).
TEXT_PART = leaf("text/plain; charset=utf-8", b"Hello\n", "7bit")
HTML_PART = leaf("text/html; charset=utf-8", HTML.encode(), "8bit")
FORWARDED = leaf("message/rfc822", message(HTML_PART, crlf=False))
SMIME = leaf(
    'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
    base64.encodebytes(b"0\x80\x06\t*\x86H\x86\xf7\r\x01\x07\x03" * 20),
    "base64",
)
STRUCTURES = [
    ("forwarded mail beside the body", multipart("mixed", HTML_PART, FORWARDED), 1),
    ("top-level pkcs7-mime", SMIME, 0),
    ("signed inside mixed", multipart("mixed", HTML_PART, multipart("signed", HTML_PART)), 0),
    ("transport padding after delimiters", multipart("alternative", TEXT_PART, HTML_PART), 1),
    ("a longer boundary is not a delimiter", multipart("mixed", HTML_PART, TEXT_PART), 1),
    ("junk preamble and epilogue", multipart("mixed", HTML_PART, pre=b"--=_b\n--x\n\x00"), 1),
    (
        "related inside alternative",
        multipart("alternative", multipart("related", HTML_PART, boundary="rel")),
        1,
    ),
]
_PADDED = {"transport padding after delimiters": (b"\n--=_b1\n", b"\n--=_b1 \t\n")}
_LONGER = {"a longer boundary is not a delimiter": (b"<p>Hello", b"--=_b1x\n<p>Hello")}


@pytest.mark.parametrize(("name", "body", "rewritten"), STRUCTURES)
def test_structures(name: str, body: bytes, rewritten: int) -> None:
    replacement = (_PADDED | _LONGER).get(name)
    if replacement is not None:
        body = body.replace(*replacement)
    raw = message(body + (b"epilogue \x00 junk\n" if "epilogue" in name else b""))
    result, _ = rewrite_and_check(raw)
    assert result.parts_rewritten == rewritten, result.notes
    if "forwarded" in name:
        inner = message(HTML_PART)
        assert inner in result.raw  # the forwarded message, byte for byte
    if not rewritten:
        assert result.raw == raw  # and check_rewrite saw that a note says why


@pytest.mark.parametrize(
    "header",
    [
        b"Subject: =?utf-8?B?R3LDvMOfZSwg5L2g5aW9?= =?iso-8859-1?Q?caf=E9?=",
        b"From: =?utf-8?q?J=C3=B6rg?= <j@example.com>",
        b"Subject: =?utf-8?B?7aCA?= lone surrogate =?utf-16?B?2AA=?= =?x-bad?Q?=ZZ?=",
        b"References: " + b"\r\n ".join(b"<id%d@example.com>" for d in range(300)),
        b"X-Long: " + b"a" * 5000,  # one line far over 998: kept, not refolded
    ],
)
def test_headers_kept_byte_for_byte(header: bytes) -> None:
    raw = header + b"\r\n" + message(multipart("alternative", TEXT_PART, HTML_PART))
    attached = leaf(
        "application/pdf; name==?utf-8?B?w6TDtsO8LnBkZg==?=", b"JVBERi0=\n", "base64"
    ).replace(b"\n\n", b"\nContent-Disposition: attachment; filename*=utf-8''%ED%A0%80.pdf\n\n")
    raw = raw.replace(
        b"\r\n--=_b1--", b"\r\n--=_b1\r\n" + attached.replace(b"\n", b"\r\n") + b"\r\n--=_b1--"
    )
    result, _ = rewrite_and_check(raw)
    assert result.parts_rewritten == 1
    assert result.raw.startswith(header + b"\r\n")


def test_mixed_line_endings() -> None:
    raw = message(multipart("alternative", TEXT_PART, HTML_PART)).replace(b"Hello\r\n", b"Hello\n")
    assert b"Hello\n" in raw
    result, texts = rewrite_and_check(raw + b"\n")
    assert unrewrite(texts[0], result.links) == HTML
