"""rewrite_message on hand-built messages: each MIME structure, encoding and charset."""

from __future__ import annotations

import base64
import binascii
import quopri
from dataclasses import replace

import pytest
from rewrite.mime_checks import (
    PLAN,
    SNIPPET,
    assert_untouched,
    html_text,
    parse,
    rewrite_and_check,
    unrewrite,
)

from relay.rewrite import rewrite_message
from relay.rewrite.transfer import encode_qp

HTML = (
    '<html><head><title>Hi</title></head><body><p>Hello <a href="https://shop.example.com/a?x=1">'
    'the shop</a> and <a href="mailto:x@example.com">mail</a>.</p>'
    '<img src="cid:logo@x"><a href="https://example.org/b">more</a></body></html>'
)
TEXT = "Hello, see https://shop.example.com/a?x=1\n"
HEAD = "From: a@example.com\nTo: b@example.net\nSubject: test\nMIME-Version: 1.0\n"


def leaf(ctype: str, body: bytes, cte: str | None = None, extra: str = "") -> bytes:
    head = f"Content-Type: {ctype}\n" + (f"Content-Transfer-Encoding: {cte}\n" if cte else "")
    return (head + extra + "\n").encode() + body


def multipart(subtype: str, *parts: bytes, boundary: str = "=_b1", pre: bytes = b"") -> bytes:
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\n'.encode()
    delim = f"\n--{boundary}\n".encode()
    return head + pre + delim + delim.join(parts) + f"\n--{boundary}--\n".encode()


def message(body: bytes, crlf: bool = True) -> bytes:
    raw = HEAD.encode() + body
    return raw.replace(b"\n", b"\r\n") if crlf else raw


def qp(text: str, charset: str = "utf-8") -> bytes:
    return quopri.encodestring(text.encode(charset)).replace(b"\n", b"\r\n")


def b64(data: bytes, width: int = 76) -> bytes:
    flat = base64.b64encode(data)
    return b"\n".join(flat[i : i + width] for i in range(0, len(flat), width))


def alternative(html_part: bytes, crlf: bool = True) -> bytes:
    text = leaf("text/plain; charset=utf-8", TEXT.encode(), "7bit")
    return message(multipart("alternative", text, html_part, pre=b"preamble text"), crlf)


@pytest.mark.parametrize("crlf", [True, False])
@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit", "7bit", None])
def test_alternative_html_in_each_transfer_encoding(cte: str | None, crlf: bool) -> None:
    data = HTML.encode()
    body = {"quoted-printable": quopri.encodestring(data), "base64": b64(data)}.get(cte or "", data)
    raw = alternative(leaf("text/html; charset=utf-8", body, cte), crlf)
    result, texts = rewrite_and_check(raw)
    assert result.links == ("https://shop.example.com/a?x=1", "https://example.org/b")
    assert result.parts_rewritten == 1
    assert unrewrite(texts[0], result.links) == HTML
    assert result.raw.startswith(raw[: raw.index(b"Content-Type: text/html")])
    assert result.raw.endswith(b"--=_b1--" + (b"\r\n" if crlf else b"\n"))
    eol = b"\r\n" if crlf else b"\n"
    assert (b"\r\n" in result.raw) == crlf and result.raw.count(b"\n") == result.raw.count(eol)


def test_base64_keeps_line_length_and_tail() -> None:
    body = b64((HTML * 5).encode(), width=64) + b"\n\n"
    raw = message(leaf("text/html; charset=utf-8", body, "base64"))
    result, _ = rewrite_and_check(raw)
    new_body = result.raw.split(b"\r\n\r\n", 1)[1]
    lines = new_body.rstrip(b"\r\n").split(b"\r\n")
    assert {len(line) for line in lines[:-1]} == {64}
    assert new_body.endswith(b"=\r\n\r\n") or new_body.endswith(b"\r\n\r\n")


def test_qp_attributes_are_escaped() -> None:
    raw = alternative(leaf("text/html; charset=utf-8", qp(HTML), "quoted-printable"))
    result, _ = rewrite_and_check(raw)
    html_body = result.raw.split(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")[1]
    assert all(len(line) <= 76 for line in html_body.split(b"\r\n"))
    unwrapped = html_body.replace(b"=\r\n", b"")
    assert b'href=3D"https://t.test/c/0"' in unwrapped
    assert b'="' not in unwrapped.replace(b'=3D"', b"")


def test_related_cid_image_untouched() -> None:
    png = leaf("image/png", b64(bytes(range(256)) * 4).replace(b"\n", b"\n"), "base64")
    png = png.replace(b"Content-Type", b"Content-ID: <logo@x>\nContent-Type", 1)
    html = leaf("text/html; charset=utf-8", HTML.encode(), "8bit")
    raw = message(multipart("related", html, png, boundary="rel"))
    result, texts = rewrite_and_check(raw)
    assert 'src="cid:logo@x"' in texts[0]
    assert result.raw.count(b"Content-ID: <logo@x>") == 1


def test_mixed_html_attachment_not_rewritten() -> None:
    attached = leaf(
        "text/html; charset=utf-8",
        HTML.encode(),
        "8bit",
        'Content-Disposition: attachment; filename="a.html"\n',
    )
    named = leaf('text/html; name="b.html"', HTML.encode(), "8bit")
    body = leaf("text/html; charset=utf-8", HTML.encode(), "8bit")
    raw = message(multipart("mixed", body, attached, named))
    result, texts = rewrite_and_check(raw)
    assert result.parts_rewritten == 1 and len(texts) == 1
    assert result.raw.count(HTML.encode()) == 2


def test_forwarded_message_not_rewritten() -> None:
    inner = message(leaf("text/html; charset=utf-8", HTML.encode(), "8bit"))
    forwarded = leaf("message/rfc822", inner)
    text = leaf("text/plain", b"see below")
    assert_untouched(message(multipart("mixed", text, forwarded)), "no HTML body part")


@pytest.mark.parametrize(
    "ctype",
    [
        'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256',
        'multipart/encrypted; protocol="application/pgp-encrypted"',
    ],
)
def test_signed_or_encrypted_multipart_identical(ctype: str) -> None:
    html = leaf("text/html", HTML.encode())
    signature = leaf("application/pkcs7-signature", b"MIAGCSqGSIb3DQEHAqCAMIACAQEx", "base64")
    raw = message(multipart("mixed", html, signature).replace(b"multipart/mixed", ctype.encode()))
    assert_untouched(raw, "signed or encrypted")


def test_pkcs7_anywhere_makes_message_identical() -> None:
    html = leaf("text/html", HTML.encode())
    smime = leaf("application/pkcs7-mime; smime-type=enveloped-data", b"MIAGCSqG", "base64")
    assert_untouched(message(multipart("mixed", html, smime)), "signed or encrypted")


def test_text_only_identical() -> None:
    assert_untouched(message(leaf("text/plain", TEXT.encode())), "no HTML body part")
    assert_untouched(b"Subject: no mime at all\r\n\r\nhello\r\n", "no HTML body part")


def test_html_only_message() -> None:
    raw = message(leaf("text/html; charset=utf-8", HTML.encode()))
    result, texts = rewrite_and_check(raw)
    assert unrewrite(texts[0], result.links) == HTML
    assert result.raw.startswith(HEAD.replace("\n", "\r\n").encode())


def test_preamble_and_epilogue_kept() -> None:
    html = leaf("text/html", HTML.encode())
    raw = message(multipart("mixed", html, pre=b"This is a MIME message.")) + b"epilogue\r\n"
    result, _ = rewrite_and_check(raw)
    assert result.raw.endswith(b"--=_b1--\r\nepilogue\r\n")
    assert b"\r\n\r\nThis is a MIME message.\r\n--=_b1\r\n" in result.raw


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        (
            message(
                multipart("mixed", leaf("text/html", b"<a href='https://x.y/'>x</a>")).replace(
                    b'; boundary="=_b1"', b""
                )
            ),
            "without boundary",
        ),
        (
            message(multipart("mixed", leaf("text/html", b"<a>x</a>")).replace(b"--=_b1--", b"")),
            "unterminated",
        ),
        (
            message(multipart("mixed", leaf("text/html", b"<a>x</a>")).replace(b"--=_b1", b"--zz")),
            "boundary line",
        ),
        (
            message(leaf("text/html", b"<a>x</a>")).replace(b"Subject", b"Subject\r\nbroken line"),
            "not a header",
        ),
    ],
)
def test_broken_structure_untouched(raw: bytes, note: str) -> None:
    assert_untouched(raw, note)


SAMPLES = {
    "utf-8": "Grüße, 你好, привет",
    "iso-8859-1": "Grüße aus Köln, ça va",
    "windows-1252": "“Quotes” – dash €",
    "iso-2022-jp": "こんにちは世界",
    "shift_jis": "こんにちは、表示",
    "euc-kr": "안녕하세요",
    "gb2312": "你好世界",
    "koi8-r": "Привет, мир",
}


@pytest.mark.parametrize("charset", sorted(SAMPLES))
@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_charsets_round_trip(charset: str, cte: str) -> None:
    html = HTML.replace("Hello", SAMPLES[charset])
    data = html.encode(charset)
    body = {"quoted-printable": quopri.encodestring(data), "base64": b64(data)}.get(cte, data)
    raw = message(leaf(f"text/html; charset={charset}", body, cte))
    result, texts = rewrite_and_check(raw)
    assert result.parts_rewritten == 1
    assert unrewrite(texts[0], result.links) == html
    assert f"charset={charset}".encode() in result.raw


def test_unknown_charset_left_alone() -> None:
    raw = message(leaf("text/html; charset=x-no-such-charset", HTML.encode()))
    assert_untouched(raw, "unknown charset")


def test_a_nul_in_the_charset_label_is_an_unknown_charset() -> None:
    """Python's codec lookup raises ValueError, not LookupError, for such a name."""
    raw = message(leaf("text/html; charset=\x00euc-kr", HTML.encode(), "quoted-printable"))
    assert_untouched(raw, "unknown charset")


def test_undecodable_multibyte_left_alone() -> None:
    raw = message(leaf("text/html; charset=shift_jis", HTML.encode() + b"\x82\xff\x81", "8bit"))
    assert_untouched(raw, "undecodable")


def test_invalid_utf8_bytes_survive() -> None:
    html = HTML.encode().replace(b"Hello", b"Hel\xff\xfelo")
    raw = message(leaf("text/html; charset=utf-8", html, "8bit"))
    result, _ = rewrite_and_check(raw)
    assert b"Hel\xff\xfelo" in result.raw and result.parts_rewritten == 1


@pytest.mark.parametrize("cte", ["7bit", None])
def test_long_7bit_line_switches_to_qp(cte: str | None) -> None:
    html = "<p>" + "word " * 190 + '<a href="https://example.com/">x</a></p>'
    assert 990 < len(html) < 998
    raw = message(leaf("text/html; charset=us-ascii", html.encode(), cte))
    result, texts = rewrite_and_check(raw)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in result.raw
    assert max(len(line) for line in result.raw.split(b"\r\n")) <= 76
    assert unrewrite(texts[0], result.links) == html
    part = parse(result.raw)
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_text(part).count(SNIPPET) == 1


def test_unknown_transfer_encoding_left_alone() -> None:
    assert_untouched(message(leaf("text/html", HTML.encode(), "x-uuencode")), "transfer encoding")


def test_undecodable_base64_left_alone() -> None:
    raw = message(leaf("text/html", b"PGh0bWw+*!!not base64\n", "base64"))
    assert_untouched(raw, "base64")


def test_same_url_in_two_parts_has_one_index() -> None:
    html = leaf("text/html; charset=utf-8", HTML.encode(), "8bit")
    raw = message(multipart("mixed", multipart("alternative", html, boundary="in"), html))
    result, texts = rewrite_and_check(raw)
    assert result.parts_rewritten == 2 and len(result.links) == 2
    assert texts[0] == texts[1]


def test_nesting_limit() -> None:
    body = leaf("text/html", HTML.encode())
    for depth in range(60):
        body = multipart("mixed", body, boundary=f"d{depth}")
    assert_untouched(message(body), "nested deeper")


def test_big_part_gets_pixel_on_top() -> None:
    html = "<html><body>" + "<p>filler text</p>\n" * 6000 + "</body></html>"
    _result, texts = rewrite_and_check(message(leaf("text/html", html.encode(), "8bit")))
    assert texts[0].index(SNIPPET) < 20
    _small, small_texts = rewrite_and_check(message(leaf("text/html", HTML.encode(), "8bit")))
    assert small_texts[0].endswith(SNIPPET + "</body></html>")


def test_inline_pgp_left_alone() -> None:
    html = "<pre>-----BEGIN PGP SIGNED MESSAGE-----\n" + HTML + "</pre>"
    assert_untouched(message(leaf("text/html", html.encode())), "PGP")


def test_tracking_off_is_identity() -> None:
    raw = message(leaf("text/html", HTML.encode()))
    result = rewrite_message(raw, replace(PLAN, opens=False, clicks=False))
    assert result.raw == raw and result.links == ()


def test_qp_encoder_fallback_keeps_lone_line_breaks() -> None:
    data = b"a\rb\nc \r\n" + b"=" * 200 + b"\t\r\nend "
    for eol in (b"\r\n", b"\n"):
        encoded = encode_qp(data, eol)
        assert binascii.a2b_qp(encoded) == data
        assert all(len(line) <= 76 for line in encoded.split(eol))
        assert encoded.count(b"\n") == encoded.count(eol)
