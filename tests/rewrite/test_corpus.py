"""Every real message and HTML email of the shared corpus through rewrite_message."""

from __future__ import annotations

import base64
import quopri
from pathlib import Path

import pytest
from rewrite.mime_checks import PLAN, check_rewrite

from relay.rewrite import rewrite_message

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def _files(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).rglob("*") if p.is_file())


def test_corpus_is_present() -> None:
    assert len(_files("mime")) > 100, f"corpus missing at {CORPUS}"
    assert len(_files("html")) > 20


def _strip_mbox_from(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


def _check(raw: bytes) -> None:
    result = rewrite_message(raw, PLAN)
    if result.raw == raw:
        assert result.parts_rewritten == 0
        assert result.notes, "an untouched message says why"
    check_rewrite(raw, result)


@pytest.mark.parametrize("path", _files("mime"), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_message(path: Path) -> None:
    _check(_strip_mbox_from(path.read_bytes()))


def _wrapped(html: bytes, cte: str, eol: bytes) -> bytes:
    body = {
        "quoted-printable": quopri.encodestring(html),
        "base64": base64.encodebytes(html),
    }.get(cte, html)
    raw = (
        b"From: a@example.com\nTo: b@example.net\nSubject: corpus\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/alternative; boundary="corpus-b"\n\n'
        b"--corpus-b\nContent-Type: text/plain; charset=utf-8\n\nplain text\n"
        b"--corpus-b\nContent-Type: text/html; charset=utf-8\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\n\n"
    )
    raw = raw.replace(b"\n", eol)
    return raw + body.replace(b"\n", eol) + eol + b"--corpus-b--" + eol


@pytest.mark.parametrize("path", _files("html"), ids=lambda p: str(p.relative_to(CORPUS)))
@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_corpus_html(path: Path, cte: str) -> None:
    html = path.read_bytes()
    for eol in (b"\r\n", b"\n"):
        raw = _wrapped(html, cte, eol)
        result = rewrite_message(raw, PLAN)
        check_rewrite(raw, result)
        if b"\x00" in html:  # UTF-16 labelled utf-8: left alone, with the reason
            assert result.raw == raw and result.parts_rewritten == 0
            assert any("NUL" in note for note in result.notes)
        else:
            assert result.parts_rewritten == 1, result.notes
