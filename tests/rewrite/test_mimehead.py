"""The fast header-block reader agrees with the email package, or leaves the block to it."""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.rewrite import mime
from relay.rewrite.headers import iter_fields
from relay.rewrite.mimehead import Head, MalformedMime, head_of, read_head

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "mime"

NAMES = ["Content-Type", "content-type", "CONTENT-TYPE", "Content-Transfer-Encoding"]
NAMES += ["Content-Disposition", "Subject", "X-Type", "Content-Type-X", "Content-Type "]
TYPES = ["text/html", "TEXT/Html", "multipart/alternative", "multipart/mixed", "text"]
TYPES += ["text/html/x", "", "message/rfc822", "text /html", "(c) text/html", "text/html(c)"]
TYPES += ["attachment", "inline", "7bit", " Quoted-Printable ", "base64", "x-uuencode"]
PARAM_NAMES = ["charset", "CharSet", "boundary", "name", "filename", "format", "x-a_b"]
PARAM_NAMES += ["charset*", "name*0", "name*1*", "filename*", "na me", ""]
VALUES = ["utf-8", '"utf-8"', "ISO-8859-1", '"=_b;c"', '"<b>"', '"<"', '""', "<b>", '"a b"']
VALUES += ['"a\\"b"', "a\\b", "us-ascii'en'%41", '"x" y', "a=b", "", '"a\r\n b"', "é", "ab*"]
SEPARATORS = [";", "; ", " ;", ";\r\n\t", ";\n ", ";;", "; ;", "\x0b;"]
EOLS = ["\r\n", "\n", "\r"]


@st.composite
def field_values(draw: st.DrawFn) -> str:
    value = draw(st.sampled_from(TYPES))
    for _ in range(draw(st.integers(0, 3))):
        value += draw(st.sampled_from(SEPARATORS))
        name, raw = draw(st.sampled_from(PARAM_NAMES)), draw(st.sampled_from(VALUES))
        value += draw(st.sampled_from([f"{name}={raw}", f"{name} = {raw}", name]))
    if draw(st.booleans()):
        value += draw(st.sampled_from([";", " ", "\t", "(comment)"]))
    return value


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from(EOLS))
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(NAMES))
        blank = draw(st.sampled_from(["", " ", "  ", "\t"]))
        lines.append(f"{name}:{blank}{draw(field_values())}")
        if draw(st.integers(0, 4)) == 0:
            lines.append(draw(st.sampled_from([" folded", "\tx", " ", "junk", "From x"])))
    block = eol.join(lines).encode("utf-8", "surrogateescape")
    return block + draw(st.sampled_from([b"", eol.encode(), (eol + eol).encode()]))


FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")  # RFC 5322: printable, no colon
MIME_FIELDS = ("content-type", "content-transfer-encoding", "content-disposition")


def reference(head: bytes) -> Head:
    """The email package's reading of the block, refused where it is ambiguous: a line
    that is not a header field, a MIME field given twice."""
    for item in iter_fields(head):
        if not FIELD_NAME.match(head, item.start):
            raise MalformedMime("a header line is not a header field")
    headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    for name in MIME_FIELDS:
        if len(headers.get_all(name, [])) > 1:
            raise MalformedMime(f"duplicate {name} header")
    return head_of(headers)


def outcome(read: Callable[[bytes], Head], head: bytes) -> Head | str:
    try:
        return read(head)
    except MalformedMime as exc:
        return f"malformed: {exc}"


@given(header_blocks())
@example(b"Content-Type: text/html; charset=UTF-8\r\n\r\n")
@example(b'Content-Type: multipart/mixed;\r\n\tboundary="<b>"\r\n\r\n')
@example(b"Content-Type: text/html; name=a; name=b\n\n")
@example(b"Content-Type: a/b\nContent-Transfer-Encoding: 7bit\nContent-Type: a/b\n\n")
def test_fast_reader_agrees_with_the_email_package(head: bytes) -> None:
    assert outcome(read_head, head) == outcome(reference, head)


def email_package_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """From here on, the blocks the email package parses, in order."""
    parsed: list[bytes] = []
    parse = BytesHeaderParser.parsebytes

    def recorded(self: BytesHeaderParser, text: bytes, headersonly: bool = True) -> Message:
        parsed.append(text)
        return parse(self, text, headersonly)

    monkeypatch.setattr(BytesHeaderParser, "parsebytes", recorded)
    return parsed


def test_usual_blocks_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [
        b'Content-Type: multipart/alternative; boundary="=_bench"\r\n\r\n',
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        b"Content-Type: image/png; name=a.png\n"
        b"Content-Disposition: attachment;\n filename=a.png\n\n",
        b"From: a@example.com\nSubject: x\nMIME-Version: 1.0\n\n",
    ]
    parsed = email_package_reads(monkeypatch)
    for head in blocks:
        assert read_head(head) == reference(head)
    assert parsed == blocks  # by the reference only: read_head did without it


def test_corpus_blocks_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every header block of every corpus message reads as the email package reads it,
    and most are read without it."""
    parsed = email_package_reads(monkeypatch)
    fast = []

    def both(head: bytes) -> Head:
        before = len(parsed)
        found = outcome(read_head, head)
        if len(parsed) == before:
            fast.append(head)
        assert found == outcome(reference, head), head
        return read_head(head)

    monkeypatch.setattr(mime, "read_head", both)
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        raw = raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw
        try:
            mime.survey(raw)
        except (MalformedMime, ValueError, TypeError):
            pass
    assert len(fast) > 300  # most corpus blocks are read without the email package
