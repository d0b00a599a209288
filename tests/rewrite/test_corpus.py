"""Every real message and HTML email of the shared corpus through rewrite_message.

Two oracles. check_rewrite: only the HTML body parts change, each exactly as
rewrite_html makes it. And tracking itself: a file whose HTML holds a link
SPEC 5 says is tracked must come out with a tracked link and the pixel. What
must be tracked is read here without the rewriter: the email package finds the
HTML body parts, a few regular expressions the links. The files the rules
leave alone although they hold such a link are named by LEFT_ALONE, each with
its reason, and must come out byte for byte with the rewriter's note saying so.
"""

from __future__ import annotations

import base64
import codecs
import email
import html
import quopri
import re
from collections.abc import Callable, Iterator
from email.message import Message
from email.policy import compat32
from pathlib import Path

import pytest
from rewrite.mime_checks import SNIPPET, TRACKED, assert_untouched, rewrite_and_check

from relay.rewrite import Rewritten

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def _files(kind: str) -> list[Path]:
    return sorted(p for p in (CORPUS / kind).rglob("*") if p.is_file())


def test_corpus_is_present() -> None:
    assert len(_files("mime")) > 100, f"corpus missing at {CORPUS}"
    assert len(_files("html")) > 20


# --- what SPEC 5 says must be tracked ------------------------------------------

# Not read for links: comments (Outlook's conditional ones included: VML links are
# not needed to call a file trackable) and elements whose text is not markup.
HIDDEN = re.compile(r"<!--.*?-->|<(script|style|title|textarea)\b.*?</\1\s*>", re.S | re.I)
ANCHOR = re.compile(r"<a(\s[^>]*)?>(.*?)</a\s*>", re.S | re.I)
HREF = re.compile(r"""(?:^|\s)href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""", re.I)
OPT_OUT = re.compile(
    r"data-notrack|clicktracking|data-pm-no-track|ses:no-track|data-msys-clicktrack"
    r"|mc:disable-tracking",
    re.I,
)
URL_TEXT = re.compile(r"(https?://|www\.)\S*|[\w-]+(\.[\w-]+)+(/\S*)?", re.I)
TAG = re.compile(r"<[^>]*>")
SEALED = {"multipart/signed", "multipart/encrypted", "application/pkcs7-mime"}
SEALED |= {"application/x-pkcs7-mime"}
IDENTITY = {"7bit", "8bit", "binary"}
ENCODINGS = IDENTITY | {"quoted-printable", "base64"}


def trackable_links(text: str) -> list[str]:
    """The http(s) URLs of <a href> that SPEC 5 tracks: outside comments, no opt-out
    attribute, visible text that is not itself a URL or a bare domain."""
    found = []
    for anchor in ANCHOR.finditer(HIDDEN.sub("", text)):
        attributes = anchor.group(1) or ""
        href = HREF.search(attributes)
        if href is None or OPT_OUT.search(attributes):
            continue
        url = html.unescape(next(g for g in href.groups() if g is not None)).strip()
        visible = html.unescape(TAG.sub("", anchor.group(2))).strip()
        if re.match(r"https?://\w", url, re.I) and not URL_TEXT.fullmatch(visible):
            found.append(url)
    return found


def html_bodies(
    part: Message, containers: tuple[str, ...] = ()
) -> Iterator[tuple[Message, tuple[str, ...]]]:
    """The text/html leaves that are not attachments nor inside forwarded mail, each
    with the multipart types around it."""
    ctype = part.get_content_type()
    if ctype.startswith("message/"):
        return
    if part.is_multipart():
        for child in part.get_payload():
            assert isinstance(child, Message)
            yield from html_bodies(child, (*containers, ctype))
    elif ctype == "text/html" and part.get_content_disposition() != "attachment":
        yield part, containers


def decoded(part: Message) -> str:
    data = part.get_payload(decode=True)
    assert isinstance(data, bytes)
    try:
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return data.decode("latin-1")


def known_charset(part: Message) -> bool:
    try:
        codecs.lookup(part.get_content_charset() or "utf-8")
    except LookupError:
        return False
    return True


def cte(part: Message) -> str:
    return str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()


# The rules that leave a message alone although its HTML holds a trackable link:
# (why, the rewriter's note, whether it applies to the message or to an HTML body).
LEFT_ALONE: list[tuple[str, str, Callable[[Message, Message, tuple[str, ...]], bool]]] = [
    (
        "signed or encrypted: relayed byte for byte (SPEC 5)",
        "signed or encrypted",
        lambda msg, part, around: any(p.get_content_type() in SEALED for p in msg.walk()),
    ),
    (
        "a multipart with a transfer encoding (RFC 2045 6.4 allows none): its parts "
        "cannot be told apart without guessing, so it is broken MIME, relayed as it came",
        "malformed MIME",
        lambda msg, part, around: any(
            p.is_multipart() and cte(p) not in IDENTITY for p in msg.walk()
        ),
    ),
    (
        "a delivery report (multipart/report): a machine's answer, not a body a sender "
        "wrote; only mixed, alternative and related parts hold message bodies",
        "no HTML body part",
        lambda msg, part, around: "multipart/report" in around,
    ),
    (
        "a transfer encoding that is none of RFC 2045's: the part cannot be re-encoded "
        "as it came, so it is relayed as it came",
        "unknown transfer encoding",
        lambda msg, part, around: cte(part) not in ENCODINGS,
    ),
    (
        "a charset Python has no codec for: the text cannot be read back as it came",
        "unknown charset",
        lambda msg, part, around: not known_charset(part),
    ),
]


def expectation(raw: bytes) -> tuple[str, str] | bool:
    """(why, note) when a rule leaves trackable HTML alone; else whether it must be tracked."""
    msg = email.message_from_bytes(raw, policy=compat32)
    tracked = False
    for part, around in html_bodies(msg):
        if not trackable_links(decoded(part)):
            continue
        for why, note, applies in LEFT_ALONE:
            if applies(msg, part, around):
                return why, note
        tracked = True
    return tracked


def assert_tracked(name: str, result: Rewritten, texts: list[str]) -> None:
    assert any(TRACKED.search(t) for t in texts) and any(SNIPPET in t for t in texts), (
        f"{name}: trackable HTML left untracked: {result.notes}"
    )


# --- the files ------------------------------------------------------------------


def _strip_mbox_from(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


@pytest.mark.parametrize("path", _files("mime"), ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_message(path: Path) -> None:
    name, raw = str(path.relative_to(CORPUS)), _strip_mbox_from(path.read_bytes())
    expected = expectation(raw)
    if isinstance(expected, tuple):
        why, note = expected
        try:
            assert_untouched(raw, note)
        except AssertionError as exc:
            raise AssertionError(f"{name}: not left alone as it should be ({why})") from exc
        return
    result, texts = rewrite_and_check(raw)
    if expected:
        assert_tracked(name, result, texts)


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
    trackable = trackable_links(html.decode("utf-8", "replace"))
    for eol in (b"\r\n", b"\n"):
        raw = _wrapped(html, cte, eol)
        if b"\x00" in html:  # UTF-16 labelled utf-8: left alone, with the reason
            assert_untouched(raw, "NUL")
            continue
        result, texts = rewrite_and_check(raw)
        assert result.parts_rewritten == 1, result.notes
        if trackable:
            assert_tracked(str(path.relative_to(CORPUS)), result, texts)
