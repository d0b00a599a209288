"""Oracles for messages that went through the real relay (SMTP in, sink out).

The copy is compared with what the client sent, as SMTP carries it (every line
ending CRLF), minus what the relay adds on purpose: a Received field on top,
a Message-ID when there was none, the control headers it strips. Tracking URLs
are resolved through the running click endpoint, never by decoding tokens here.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from email.message import Message

from rewrite.mime_checks import html_text, max_line, parse

from relay.core.config import SmtpConfig
from relay.policy import control_header_names
from relay.rewrite.headers import header_values, remove_headers
from relay.rewrite.links import clean_url, decode_attribute_value
from relay.rewrite.markup import PIXEL_TEMPLATE

_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
# Exactly the field relay.smtp.message.received_header writes (hostname relay.test): a
# message may begin with a stray indented line that would read as its continuation.
_RECEIVED = re.compile(
    rb"\AReceived: from [^\r\n]*\r\n\tby relay\.test with [^\r\n]*\r\n(?:\tfor <.*\r\n)?"
)
_ADDED_ID = re.compile(rb"\AMessage-ID: [^\n]*\n")
_TOKEN = r"[A-Za-z0-9_\-.~]+"

Resolve = Callable[[str], str]  # tracking URL -> where the click endpoint redirects


def on_the_wire(raw: bytes) -> bytes:
    """raw as SMTP carries it: ending in CRLF, every line ending CRLF.

    Sent in this form: the relay's DATA reader undoes dot-stuffing only after
    CRLF, while smtplib also stuffs after a bare LF (reported to the lead).
    """
    wire = raw if raw.endswith(b"\r\n") else raw + b"\r\n"
    return _LINE_ENDINGS.sub(b"\r\n", wire)


def expected_copy(wire: bytes) -> bytes:
    """What the relay must pass on, before its own headers: wire without control headers."""
    return remove_headers(wire, control_header_names(SmtpConfig()))


def without_relay_headers(sent: bytes, delivered: bytes) -> bytes:
    """delivered minus the Received field and the Message-ID the relay added."""
    match = _RECEIVED.match(delivered)
    assert match is not None, delivered[:200]
    rest = delivered[match.end() :]
    if not any(header_values(sent, "message-id")):
        added = _ADDED_ID.match(rest)
        assert added is not None, rest[:200]
        rest = rest[added.end() :]
    return rest


def click_resolver(tracking_port: int) -> Resolve:
    """HEAD each click URL (never counted as a click) and return its Location."""
    conn = http.client.HTTPConnection("127.0.0.1", tracking_port, timeout=10)
    prefix = f"http://127.0.0.1:{tracking_port}"

    def resolve(url: str) -> str:
        assert url.startswith(prefix)
        conn.request("HEAD", url[len(prefix) :])
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 302, (url, answer.status)
        location = answer.getheader("Location")
        assert location is not None
        return location

    return resolve


def _shape(message: Message) -> list[tuple[str, object, object]]:
    return [(p.get_content_type(), p.preamble, p.epilogue) for p in message.walk()]


def _headers(part: Message, skip: str = "") -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in part.items() if k.lower() != skip]


def check_relayed(sent: bytes, got: bytes, base: str, resolve: Resolve) -> int:
    """Assert got is sent with only tracking added; return how many HTML parts changed."""
    if got == sent:
        return 0
    before, after = parse(sent), parse(got)
    assert _shape(before) == _shape(after), "structure changed"
    if max_line(sent) <= 998:
        assert max_line(got) <= 998
    changed = 0
    for old, new in zip(before.walk(), after.walk(), strict=True):
        if old.is_multipart():
            assert _headers(old) == _headers(new)
        elif old._payload == new._payload:  # the raw text; get_payload() may decode
            assert _headers(old) == _headers(new)
            assert old.get_payload(decode=True) == new.get_payload(decode=True)
        else:
            assert old.get_content_type() == "text/html", "a non-HTML leaf changed"
            assert _headers(old, "content-transfer-encoding") == _headers(
                new, "content-transfer-encoding"
            )
            assert_untracked(html_text(new), html_text(old), base, resolve)
            changed += 1
    assert changed, "bytes changed outside the leaves"
    return changed


def assert_untracked(text: str, original: str, base: str, resolve: Resolve) -> None:
    """text without its one pixel, each tracked href put back, is original.

    The original href text is found by matching the rest of the output literally
    against the source; it must decode to the URL the click endpoint redirects to.
    """
    pixel = re.escape(PIXEL_TEMPLATE).replace(
        re.escape("{url}"), re.escape(base) + "/o/" + _TOKEN + r"\.gif"
    )
    assert len(re.findall(pixel, text)) == 1, "not exactly one pixel"
    text = re.sub(pixel, "", text)
    link = re.compile("([\"'])(" + re.escape(base) + "/c/" + _TOKEN + r")\1")
    pieces = link.split(text)
    literals, urls = pieces[0::3], pieces[2::3]
    pattern = "(.*?)".join(re.escape(piece) for piece in literals)
    match = re.fullmatch(pattern, original, re.DOTALL)
    assert match is not None, (
        f"not the source with hrefs replaced: {_first_stray(literals, original)}"
    )
    for raw, url in zip(match.groups(), urls, strict=True):
        value = raw[1:-1] if raw[:1] in "\"'" and raw[-1:] == raw[:1] else raw
        assert clean_url(decode_attribute_value(value)) == resolve(url), raw


def _first_stray(literals: list[str], original: str) -> str:
    """The first piece of output that is not in the source, with the source around it."""
    pos = 0
    for piece in literals:
        found = original.find(piece, pos)
        if found < 0:
            return f"{piece[:120]!r} not in source near {original[pos : pos + 160]!r}"
        pos = found + len(piece)
    return "the pieces are in order; the hrefs between them differ"
