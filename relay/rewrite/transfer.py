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
    size, count = len(body), len(edits)
    runs: list[tuple[int, int, bytes]] = []  # (encoded start, encoded end, new decoded run)
    line = decoded = i = 0  # line: an encoded line start; decoded: its offset in old
    while i < count:
        start, stop, _ = edits[i]
        line, decoded, end, decoded_end, chunk = _seek_line(body, line, decoded, start)
        pieces, j = [chunk], i + 1
        while True:  # take in every edit that starts before the run's end, and its lines
            last = stop - 1 if stop > start else start
            if last >= decoded_end and end < size:
                _, _, end, decoded_end, chunk = _seek_line(body, end, decoded_end, last, pieces)
                pieces.append(chunk)
            if j == count or edits[j][0] >= decoded_end:
                break
            start, stop, _ = edits[j]
            j += 1
        run = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if run != old[decoded:decoded_end]:
            raise ValueError("quoted-printable run does not decode in place")
        runs.append((line, end, _apply(run, decoded, edits[i:j])))
        line, decoded, i = end, decoded_end, j
    return _splice_runs(body, runs, eol)


def _seek_line(
    body: bytes, line: int, decoded: int, target: int, passed: list[bytes] | None = None
) -> tuple[int, int, int, int, bytes]:
    """(start, decoded start, end, decoded end, decoded line) of the line holding target.

    Every decoded byte takes at least one encoded byte, so line + (target - decoded)
    never overshoots: jump there, back to a line start, and decode only what was passed
    (kept in passed when given).
    """
    size, a2b, rfind = len(body), binascii.a2b_qp, body.rfind
    while True:
        guess = line + target - decoded
        newline = rfind(b"\n", line, guess if guess < size else size)
        if newline >= 0:
            chunk = a2b(body[line : newline + 1])
        else:
            end = body.find(b"\n", line) + 1 or size
            if end - line > MAX_LINE * 4:
                raise ValueError("quoted-printable line too long to patch")
            chunk = a2b(body[line:end])
            decoded_end = decoded + len(chunk)
            if target < decoded_end or end >= size:
                return line, decoded, end, decoded_end, chunk
            newline = end - 1
        if passed is not None:
            passed.append(chunk)
        line, decoded = newline + 1, decoded + len(chunk)


def _splice_runs(body: bytes, runs: list[tuple[int, int, bytes]], eol: bytes) -> bytes:
    """body with each (start, end, data) run's encoded lines replaced by data, encoded."""
    ended = [body[end - 1 : end] == b"\n" for _, end, _ in runs]
    encoded = encode_runs([run[2] for run in runs], ended, eol)
    pieces: list[bytes] = []
    cursor = 0
    for (start, end, _), fast in zip(runs, encoded, strict=True):
        pieces += (body[cursor:start], fast)
        cursor = end
    pieces.append(body[cursor:])
    return b"".join(pieces)


def encode_runs(runs: list[bytes], line_ended: list[bool], eol: bytes) -> list[bytes]:
    """[_encode_run(data, eol, ended) ...], with one decode checking all the encodings.

    Each encoded run but the last ends a line, so the runs joined by NUL lines decode
    run by run; the data holds no NUL, so the NUL lines pin each run to its own data.
    When the joint check fails, each run is encoded and checked alone, as before.
    """
    b2a, crlf = binascii.b2a_qp, eol == b"\r\n"
    encoded: list[bytes] = []
    for data, ended in zip(runs, line_ended, strict=True):
        soft_end = ended and not data.endswith(eol)
        fast = b2a(data + b"!" if soft_end else data, quotetabs=False, istext=True, header=False)
        if crlf and b"\n" not in data:
            fast = fast.replace(b"=\n", b"=\r\n")
        if soft_end and fast.endswith(b"!"):  # see _encode_run
            fast = fast[:-1] + b"=" + eol
        encoded.append(fast)
    sep = b"\x00" + eol
    joined = sep.join(runs)
    if (
        joined.count(b"\x00") == len(runs) - 1
        and all(fast.endswith(b"\n") for fast in encoded[:-1])
        and _qp_is_clean(sep.join(encoded), joined, eol)
    ):
        return encoded
    return [_encode_run(data, eol, ended) for data, ended in zip(runs, line_ended, strict=True)]


def _apply(run: bytes, offset: int, edits: list[tuple[int, int, bytes]]) -> bytes:
    """run (the decoded bytes from offset on) with the edits, given in offsets of old."""
    if len(edits) == 1:
        start, end, new = edits[0]
        return run[: start - offset] + new + run[end - offset :]
    pieces: list[bytes] = []
    cursor = 0
    for start, end, new in edits:
        pieces += (run[cursor : start - offset], new)
        cursor = end - offset
    pieces.append(run[cursor:])
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
