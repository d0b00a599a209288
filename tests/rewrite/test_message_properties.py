"""Hypothesis: random MIME trees, mutations and junk never break rewrite_message."""

from __future__ import annotations

import base64
import quopri

from hypothesis import assume, given
from hypothesis import strategies as st
from rewrite.mime_checks import PLAN, check_rewrite, html_text, parse, unrewrite

from relay.rewrite import rewrite_message

ALPHABETS = {
    "utf-8": "abcdeé€你😀 .,;:!?-()=",
    "us-ascii": "abcdexyz .,;:!?-()=",
    "iso-8859-1": "abcdeäöüßçé .,;:=",
    "windows-1252": "abcde“”–€ .,;=",
    "koi8-r": "абвгдеЖЗ .,=",
    "shift_jis": "あいうえお漢字 .,=",
    "iso-2022-jp": "あいうえお漢字 .,=",
    "euc-kr": "안녕하세요 .,=",
    "gb2312": "你好世界 .,=",
}
ENCODINGS = ["quoted-printable", "base64", "8bit", "7bit", None]


@st.composite
def html_documents(draw: st.DrawFn, charset: str) -> str:
    words = st.text(alphabet=ALPHABETS[charset], min_size=0, max_size=40)
    pieces = ["<html><body>"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["text", "link", "mailto", "newline", "long"]))
        if kind == "link":
            host = draw(st.sampled_from(["a.example", "b.example.org", "c.example.net"]))
            path = draw(st.text(alphabet="abcxyz019/-_.~", max_size=30))
            pieces.append(f'<a href="https://{host}/{path}">{draw(words)}</a>')
        elif kind == "mailto":
            pieces.append(f'<a href="mailto:x@a.example">{draw(words)}</a>')
        elif kind == "newline":
            pieces.append(draw(st.sampled_from(["\n", "\r\n", "\n\n"])))
        elif kind == "long":
            pieces.append("x" * draw(st.integers(900, 1100)))
        else:
            pieces.append(draw(words))
    if pieces[:1] == ["<html><body>"]:
        pieces.append("</body></html>")
    return "".join(pieces)


def _body(data: bytes, cte: str | None) -> bytes:
    if cte == "quoted-printable":
        return quopri.encodestring(data)
    if cte == "base64":
        return base64.encodebytes(data)
    return data


@st.composite
def leaves(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["html", "html", "text", "attachment", "html-attachment"]))
    cte = draw(st.sampled_from(ENCODINGS))
    charset = draw(st.sampled_from(sorted(ALPHABETS)))
    if kind == "attachment":
        data = draw(st.binary(max_size=300))
        head = "Content-Type: application/octet-stream\nContent-Disposition: attachment\n"
        return (head + "Content-Transfer-Encoding: base64\n\n").encode() + _body(data, "base64")
    if kind == "text":
        data = draw(st.text(alphabet=ALPHABETS[charset], max_size=80)).encode(charset)
        ctype = f"text/plain; charset={charset}"
    else:
        data = draw(html_documents(charset)).encode(charset)
        ctype = f"text/html; charset={charset}"
        if kind == "html-attachment":
            ctype += '; name="page.html"'
    head = f"Content-Type: {ctype}\n" + (f"Content-Transfer-Encoding: {cte}\n" if cte else "")
    return (head + "\n").encode() + _body(data, cte)


def trees(depth: int = 0) -> st.SearchStrategy[bytes]:
    if depth >= 3:
        return leaves()
    return st.one_of(leaves(), _multiparts(depth))


@st.composite
def _multiparts(draw: st.DrawFn, depth: int) -> bytes:
    subtype = draw(st.sampled_from(["alternative", "mixed", "related", "report"]))
    boundary = f"=_Part_{depth}_{draw(st.integers(0, 999))}"
    parts = draw(st.lists(trees(depth + 1), min_size=1, max_size=4))
    preamble = draw(st.sampled_from([b"", b"This is a multi-part message.\n"]))
    epilogue = draw(st.sampled_from([b"", b"\n", b"epilogue\n"]))
    head = f'Content-Type: multipart/{subtype};\n boundary="{boundary}"\n\n'.encode()
    delim = f"\n--{boundary}\n".encode()
    closing = f"\n--{boundary}--\n".encode()
    return head + preamble + delim + delim.join(parts) + closing + epilogue


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    body = draw(trees())
    raw = b"From: a@example.com\nSubject: random\nMIME-Version: 1.0\n" + body
    return raw.replace(b"\n", b"\r\n") if draw(st.booleans()) else raw


@given(messages())
def test_random_trees_rewrite_cleanly(raw: bytes) -> None:
    result = rewrite_message(raw, PLAN)
    texts = check_rewrite(raw, result)
    assert len(texts) == result.parts_rewritten
    if result.parts_rewritten:
        old_html = [html_text(p) for p in parse(raw).walk() if p.get_content_type() == "text/html"]
        new_html = [
            html_text(p) for p in parse(result.raw).walk() if p.get_content_type() == "text/html"
        ]
        changed = [(o, n) for o, n in zip(old_html, new_html, strict=True) if o != n]
        for old, new in changed:
            assert unrewrite(new, result.links) == old


@given(messages(), st.data())
def test_mutated_messages_never_break(raw: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(raw)))
    cut = data.draw(st.integers(0, 20))
    junk = data.draw(
        st.binary(max_size=20) | st.sampled_from([b"\r\n--", b"\n\n", b"=", b"--=_Part_0"])
    )
    mutated = raw[:at] + junk + raw[at + cut :]
    assume(mutated != raw)
    result = rewrite_message(mutated, PLAN)
    check_rewrite(mutated, result)


@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    result = rewrite_message(raw, PLAN)
    assert isinstance(result.raw, bytes)
    if result.raw == raw:
        assert result.parts_rewritten == 0 and result.notes


def test_a_bare_cr_in_a_header_block_leaves_the_message_alone() -> None:
    """Found by test_mutated_messages_never_break: with a bare CR in its header block the
    email package (and mail readers) end a line where the rewriter did not, so they saw
    another body; such a message's shape is ambiguous and it is relayed as it came."""
    raw = (
        b"From: a@example.com\r\nSubject: random\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=euc-kr\r\nContent-Transfer-Encoding: base64\r/\n"
        b"\r\nPGh0bWw+PGJvZHk+PC9ib2R5PjwvaHRtbD4=\r\n"
    )
    result = rewrite_message(raw, PLAN)
    check_rewrite(raw, result)
    assert result.raw == raw and result.notes == ("malformed MIME: bare CR in a header block",)
