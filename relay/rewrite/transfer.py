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


def patch_qp(body: bytes, old: bytes, edits: list[tuple[int, int, bytes]], eol: bytes) -> bytes:
    """body with only the encoded lines around each (start, end, new) edit of old re-encoded.

    old is a2b_qp(body); edits are sorted, non-overlapping ranges of old. QP is
    line-oriented and a2b_qp is line-local (nothing carries past a "\\n"), so a run
    of whole encoded lines decodes on its own: each touched run is decoded, checked
    against old, edited and encoded; untouched lines keep their exact bytes, and the
    work follows the edits, not the part's size. Raises ValueError when a run does
    not check out; the caller then encodes the whole part.
    """
    pieces: list[bytes] = []
    cursor = line = decoded = 0  # line: an encoded line start; decoded: its offset in old
    i = 0
    while i < len(edits):
        line, decoded, end, decoded_end = _seek_line(body, line, decoded, edits[i][0])
        j = i
        while j < len(edits) and (j == i or edits[j][0] < decoded_end):
            last = max(edits[j][1] - 1, edits[j][0])
            if last >= decoded_end and end < len(body):
                _, _, end, decoded_end = _seek_line(body, end, decoded_end, last)
            j += 1
        span = body[line:end]
        if binascii.a2b_qp(span) != old[decoded:decoded_end]:
            raise ValueError("quoted-printable run does not decode in place")
        new = _apply(old, decoded, decoded_end, edits[i:j])
        pieces += (body[cursor:line], _encode_run(new, eol, span.endswith(b"\n")))
        cursor, line, decoded, i = end, end, decoded_end, j
    pieces.append(body[cursor:])
    return b"".join(pieces)


def _seek_line(body: bytes, line: int, decoded: int, target: int) -> tuple[int, int, int, int]:
    """(start, decoded start, end, decoded end) of the encoded line holding decoded target.

    Every decoded byte takes at least one encoded byte, so line + (target - decoded)
    never overshoots: jump there, back to a line start, and decode only what was passed.
    """
    while True:
        guess = min(line + target - decoded, len(body))
        newline = body.rfind(b"\n", line, guess)
        if newline >= 0:
            decoded += len(binascii.a2b_qp(body[line : newline + 1]))
            line = newline + 1
            continue
        end = body.find(b"\n", line) + 1 or len(body)
        if end - line > MAX_LINE * 4:
            raise ValueError("quoted-printable line too long to patch")
        decoded_end = decoded + len(binascii.a2b_qp(body[line:end]))
        if target < decoded_end or end >= len(body):
            return line, decoded, end, decoded_end
        line, decoded = end, decoded_end


def _apply(old: bytes, start: int, end: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    pieces: list[bytes] = []
    cursor = start
    for edit_start, edit_end, new in edits:
        pieces += (old[cursor:edit_start], new)
        cursor = edit_end
    pieces.append(old[cursor:end])
    return b"".join(pieces)


def _encode_run(data: bytes, eol: bytes, line_ended: bool) -> bytes:
    """data as QP lines (encode_qp checks itself); a soft break at the end when the run
    it replaces ended a line, so the next original line still starts a line."""
    if not line_ended or data.endswith(eol):
        return encode_qp(data, eol)
    encoded = encode_qp(data + b"!", eol)  # "!" is never escaped: it holds the "=" place
    return encoded[:-1] + b"=" + eol


def encode_edits(
    text: str, codec: str, errors: str, size: int, edits: list[tuple[int, int, str]]
) -> list[tuple[int, int, bytes]] | None:
    """Edits of text as edits of its size encoded octets; None for stateful charsets."""
    if errors != "surrogateescape":
        return None  # only stateless, ASCII-compatible codecs encode piece by piece
    try:
        if text.isascii() and len(text) == size:
            return [(start, end, new.encode(codec, errors)) for start, end, new in edits]
        result: list[tuple[int, int, bytes]] = []
        cursor = offset = 0
        for start, end, new in edits:
            offset += len(text[cursor:start].encode(codec, errors))
            length = len(text[start:end].encode(codec, errors))
            result.append((offset, offset + length, new.encode(codec, errors)))
            offset, cursor = offset + length, end
    except UnicodeError:
        return None
    return result
