"""Surgical operations on a message's header block (pure bytes -> bytes).

Headers are never refolded or re-encoded: lines are found, dropped or added
in place, keeping the message's own line ending.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

_BLANK_LINE = re.compile(rb"\n\r?\n")
_NEWLINE_IN_TEXT = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Field:
    """One header field's byte range in a header block, folded lines included."""

    name: bytes  # lower-cased; b"" for a line that is not a field (mbox From_, junk)
    start: int
    end: int  # just past the field's last line ending


def head_end(raw: bytes, start: int = 0, stop: int | None = None) -> int:
    """Offset just past the blank line that ends the header block starting at start.

    Without a blank line the whole range is header block (RFC 2046 allows a
    body part made of headers only).
    """
    stop = len(raw) if stop is None else stop
    if raw.startswith(b"\n", start, stop):
        return start + 1
    if raw.startswith(b"\r\n", start, stop):
        return start + 2
    found = _BLANK_LINE.search(raw, start, stop)
    return stop if found is None else found.end()


def line_ending(raw: bytes) -> bytes:
    """The line ending the message uses: that of its first line (CRLF by default)."""
    first = raw.find(b"\n")
    if first > 0 and raw[first - 1 : first] == b"\r":
        return b"\r\n"
    return b"\n" if first >= 0 else b"\r\n"


def iter_fields(head: bytes) -> Iterator[Field]:
    """The fields of a header block, stopping at the blank line."""
    pos, size = 0, len(head)
    current: Field | None = None
    while pos < size:
        nl = head.find(b"\n", pos)
        end = size if nl < 0 else nl + 1
        line = head[pos:end]
        if line in (b"\n", b"\r\n"):
            break
        if current is not None and line[:1] in (b" ", b"\t"):
            current = Field(current.name, current.start, end)
        else:
            if current is not None:
                yield current
            colon = line.find(b":")
            name = line[:colon].rstrip(b" \t").lower() if colon > 0 else b""
            current = Field(name, pos, end)
        pos = end
    if current is not None:
        yield current


def field_value(head: bytes, item: Field) -> str:
    """The unfolded value of one field."""
    text = head[item.start : item.end]
    value = text[text.find(b":") + 1 :]
    unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", value)
    return unfolded.decode("utf-8", "replace").strip()


def header_values(raw: bytes, name: str) -> list[str]:
    """Unfolded values of every top-level header called name (case-insensitive)."""
    try:
        head = raw[: head_end(raw)]
        wanted = name.strip().lower().encode("ascii", "replace")
        return [field_value(head, f) for f in iter_fields(head) if f.name == wanted]
    except Exception:
        return []


def remove_headers(raw: bytes, names: Collection[str]) -> bytes:
    """raw without the top-level headers in names (with their folded lines)."""
    try:
        end = head_end(raw)
        wanted = {n.strip().lower().encode("ascii", "replace") for n in names}
        doomed = [f for f in iter_fields(raw[:end]) if f.name in wanted]
        if not doomed:
            return raw
        pieces, pos = [], 0
        for item in doomed:
            pieces.append(raw[pos : item.start])
            pos = item.end
        pieces.append(raw[pos:])
        return b"".join(pieces)
    except Exception:
        return raw


def format_field(line: str, eol: bytes) -> bytes:
    """One "Name: value" line in eol, its embedded line breaks kept as folds only."""
    pieces = _NEWLINE_IN_TEXT.split(line)
    folded = [pieces[0]] + [p if p[:1] in (" ", "\t") else " " + p for p in pieces[1:] if p]
    return eol.join(p.encode("utf-8", "replace") for p in folded) + eol


def prepend_headers(raw: bytes, lines: Sequence[str]) -> bytes:
    """raw with "Name: value" lines added on top, in the message's line ending."""
    try:
        eol = line_ending(raw)
        return b"".join(format_field(line, eol) for line in lines) + raw
    except Exception:
        return raw


def set_header(head: bytes, name: str, value: str) -> bytes:
    """head with the first field called name replaced by "name: value" (or added last).

    Used for the one header edit the rewriter makes: a part switched to
    quoted-printable. Other fields keep every byte.
    """
    eol = line_ending(head)
    new = format_field(f"{name}: {value}", eol)
    wanted = name.lower().encode("ascii")
    fields = list(iter_fields(head))
    for item in fields:
        if item.name == wanted:
            return head[: item.start] + new + head[item.end :]
    insert_at = fields[-1].end if fields else 0
    if fields and not head[:insert_at].endswith(b"\n"):
        new = eol + new
    return head[:insert_at] + new + head[insert_at:]
