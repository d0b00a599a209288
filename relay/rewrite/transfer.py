"""Content-Transfer-Encoding codecs that reproduce a part's own layout.

A rewritten part keeps its transfer encoding: base64 with the line length and
line ending it came with, quoted-printable with lines of at most 76 characters
in the part's line ending. Every encoder result is checked against a decoder.
"""

from __future__ import annotations

import binascii
import re

MAX_LINE = 998  # RFC 5322 line limit, without the line ending
QP_LINE = 76
_QP_UNSAFE = re.compile(rb"[^\x21-\x3c\x3e-\x7e \t]")


def decode_base64(body: bytes, eol: bytes) -> tuple[int, bytes, bytes]:
    """(line length, trailing line endings, data); the layout must reproduce exactly."""
    core = body.rstrip(b"\r\n")
    tail = body[len(core) :]
    first = core.find(eol)
    line = len(core) if first < 0 else first
    line = max(line, QP_LINE) if first < 0 else line
    if line <= 0 or line > MAX_LINE:
        raise ValueError("base64 line length out of range")
    try:
        data = binascii.a2b_base64(core)
    except binascii.Error as exc:  # a ValueError, with a clearer message
        raise ValueError("undecodable base64") from exc
    if encode_base64(data, line, eol) + tail != body:
        raise ValueError("base64 layout does not round-trip")
    return line, tail, data


def encode_base64(data: bytes, line: int, eol: bytes) -> bytes:
    """Base64 in lines of exactly line characters (the last shorter), no final eol."""
    flat = binascii.b2a_base64(data, newline=False)
    return eol.join(flat[i : i + line] for i in range(0, len(flat), line))


def encode_qp(data: bytes, eol: bytes) -> bytes:
    """Quoted-printable with lines <= 76, hard breaks as eol; binascii fast, exact fallback."""
    fast = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    if eol == b"\r\n" and b"\n" not in data:
        fast = fast.replace(b"=\n", b"=\r\n")
    if _qp_is_clean(fast, data, eol):
        return fast
    return eol.join(_qp_line(line, eol) for line in data.split(eol))


def _qp_is_clean(encoded: bytes, data: bytes, eol: bytes) -> bool:
    if eol == b"\r\n":
        crlf = encoded.count(b"\r\n")
        if encoded.count(b"\n") != crlf or encoded.count(b"\r") != crlf:
            return False
    elif b"\r" in encoded:
        return False
    longest = max(map(len, encoded.split(b"\n")))
    return longest <= QP_LINE + len(eol) - 1 and binascii.a2b_qp(encoded) == data


def _qp_line(line: bytes, eol: bytes) -> bytes:
    """One hard line: escape, protect trailing whitespace, soft-wrap without splitting =XX."""
    escaped = _QP_UNSAFE.sub(lambda m: b"=%02X" % m.group()[0], line)
    if escaped[-1:] in (b" ", b"\t"):
        escaped = escaped[:-1] + b"=%02X" % escaped[-1]
    pieces = []
    while len(escaped) > QP_LINE:
        cut = QP_LINE - 1
        equals = escaped.rfind(b"=", cut - 2, cut)
        cut = equals if equals >= 0 else cut
        pieces.append(escaped[:cut] + b"=")
        escaped = escaped[cut:]
    pieces.append(escaped)
    return eol.join(pieces)


def longest_line(data: bytes) -> int:
    """Length of the longest line, without its line ending."""
    if max(map(len, data.split(b"\n"))) <= MAX_LINE:
        return 0
    return max(len(line) - line.endswith(b"\r") for line in data.split(b"\n"))
