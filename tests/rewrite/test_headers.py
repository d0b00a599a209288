"""Header block surgery: folded lines, both line endings, no refolding."""

from __future__ import annotations

import pytest

from relay.rewrite.headers import (
    head_end,
    header_values,
    prepend_headers,
    remove_headers,
    set_header,
)

MESSAGE = (
    b"Received: from a\r\n\tby b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"X-Track: none\r\n"
    b"Subject:  Hello\r\n  world \r\n"
    b"x-track: opens\r\n"
    b"\r\n"
    b"X-Track: body line, not a header\r\n"
)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_header_values_unfold_and_ignore_body(eol: bytes) -> None:
    raw = MESSAGE.replace(b"\r\n", eol)
    assert header_values(raw, "X-TRACK") == ["none", "opens"]
    assert header_values(raw, "subject") == ["Hello  world"]
    assert header_values(raw, "received") == ["from a\tby b; Mon, 1 Jan 2024 00:00:00 +0000"]
    assert header_values(raw, "Missing") == []


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_remove_headers_takes_folded_lines(eol: bytes) -> None:
    raw = MESSAGE.replace(b"\r\n", eol)
    out = remove_headers(raw, ["x-track", "Received"])
    expected = b"Subject:  Hello\r\n  world \r\n\r\nX-Track: body line, not a header\r\n"
    assert out == expected.replace(b"\r\n", eol)
    assert remove_headers(raw, ["nothing"]) is raw


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_prepend_keeps_line_ending(eol: bytes) -> None:
    raw = MESSAGE.replace(b"\r\n", eol)
    out = prepend_headers(raw, ["Received: from x\r\n\tby y", "Message-ID: <1@x>"])
    assert out == b"Received: from x" + eol + b"\tby y" + eol + b"Message-ID: <1@x>" + eol + raw


def test_prepend_cannot_inject_a_header() -> None:
    out = prepend_headers(b"A: b\n\nbody", ["X-Note: a\nBcc: victim@example.com"])
    assert out.startswith(b"X-Note: a\n Bcc: victim@example.com\nA: b\n")
    assert header_values(out, "bcc") == []


def test_head_end() -> None:
    assert head_end(MESSAGE) == MESSAGE.index(b"X-Track: body") == len(MESSAGE) - 34
    assert head_end(b"A: b\n\nbody\n\nmore") == len(b"A: b\n\n")
    assert head_end(b"\r\nbody only") == 2
    assert head_end(b"A: headers only\r\n") == len(b"A: headers only\r\n")
    assert head_end(b"") == 0


def test_set_header_replaces_or_adds() -> None:
    head = b"Content-Type: text/html\r\nContent-Transfer-Encoding:\r\n 7bit\r\n\r\n"
    assert set_header(head, "Content-Transfer-Encoding", "quoted-printable") == (
        b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    assert set_header(b"Content-Type: text/html\n\n", "Content-Transfer-Encoding", "base64") == (
        b"Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n"
    )
    assert set_header(b"\r\n", "A", "b") == b"A: b\r\n\r\n"


def test_never_raises_on_junk() -> None:
    junk = b"\xff\xfe:\x00\r\r\n \n:\n"
    assert header_values(junk, "\udcff") == []
    assert remove_headers(junk, ["\xff"]) == junk
    assert prepend_headers(junk, ["X: \udcff"]).endswith(junk)
