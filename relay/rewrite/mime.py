"""Find the HTML body parts in a message's raw bytes; decode, re-encode, splice back.

Surgical, not regenerative: the message is never re-serialized. The multipart
tree is located by byte offsets (RFC 2046 delimiter lines), only the chosen
part bodies are decoded, and their new bytes replace exactly their old range.
Anything ambiguous leaves the message (or the part) alone, with a note.
"""

from __future__ import annotations

import binascii
import itertools
import re
from dataclasses import dataclass, field
from functools import lru_cache

from relay.rewrite.headers import head_end, line_ending, set_header
from relay.rewrite.markup import apply_edits
from relay.rewrite.mimehead import Head, read_head
from relay.rewrite.mimehead import MalformedMime as MalformedMime  # raised here too
from relay.rewrite.transfer import (
    MAX_LINE,
    QP_LINE,
    decode_base64,
    encode_base64,
    encode_edits,
    encode_qp,
    longest_line,
    patch_qp,
)

MAX_DEPTH = 50
MAX_PARTS = 1000
BODY_CONTAINERS = frozenset({"multipart/alternative", "multipart/mixed", "multipart/related"})
SIGNED_OR_ENCRYPTED = frozenset(
    {
        "multipart/signed",
        "multipart/encrypted",
        "application/pkcs7-mime",
        "application/x-pkcs7-mime",
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-encrypted",
        "application/pgp-signature",
    }
)
_IDENTITY = frozenset({"7bit", "8bit", "binary"})
_TRANSFER = _IDENTITY | {"quoted-printable", "base64"}
_ASCII_PROBE = "".join(map(chr, range(32, 127))) + "\t\r\n"
_CHARSET_LABEL = re.compile(r"[A-Za-z0-9!#$%&'+\-^_`{}~.:]+")


class PartLeftAlone(Exception):
    """One HTML part cannot be decoded and re-encoded exactly: relay it untouched."""


@dataclass(frozen=True)
class Entity:
    """One MIME entity as byte offsets: head is raw[start:body_start], body to end."""

    start: int
    body_start: int
    end: int
    headers: Head


@dataclass
class Survey:
    """What a walk of the tree found."""

    html_bodies: list[Entity] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)
    entities: int = 0


@dataclass(frozen=True)
class DecodedHtml:
    """An HTML body part's text, with everything needed to encode it back the same way."""

    entity: Entity
    text: str
    codec: str
    errors: str
    transfer: str
    eol: bytes
    size: int  # decoded octets, for the "auto" pixel position
    b64_line: int = QP_LINE
    b64_tail: bytes = b""
    data: bytes = b""  # the decoded octets, kept so a QP body is not decoded twice


_BARE_CR = re.compile(rb"\r(?!\n)")


def survey(raw: bytes) -> Survey:
    """Walk the whole tree; raises MalformedMime when its shape is ambiguous."""
    found = Survey()
    _visit(raw, 0, len(raw), found, 0, True)
    return found


def _visit(raw: bytes, start: int, end: int, found: Survey, depth: int, eligible: bool) -> None:
    found.entities += 1
    if found.entities > MAX_PARTS:
        raise MalformedMime(f"more than {MAX_PARTS} parts")
    if depth > MAX_DEPTH:
        raise MalformedMime(f"nested deeper than {MAX_DEPTH}")
    body_start = head_end(raw, start, end)
    head = raw[start:body_start]
    if _BARE_CR.search(head):  # mail readers disagree on where its lines end
        raise MalformedMime("bare CR in a header block")
    entity = Entity(start, body_start, end, read_head(head))
    ctype = entity.headers.content_type
    found.content_types.add(ctype)
    if ctype.startswith("multipart/"):
        inner_eligible = eligible and ctype in BODY_CONTAINERS
        for child_start, child_end in _split_multipart(raw, entity):
            _visit(raw, child_start, child_end, found, depth + 1, inner_eligible)
    elif ctype == "text/html" and eligible and not _is_attachment(entity.headers):
        if _has_body(raw, entity):
            found.html_bodies.append(entity)


def _has_body(raw: bytes, entity: Entity) -> bool:
    """A part without the blank line is headers only; an empty body has nothing to track."""
    head = raw[entity.start : entity.body_start]
    ended = head in (b"\n", b"\r\n") or head.endswith((b"\n\n", b"\n\r\n"))
    return (
        ended
        and not raw[entity.body_start : entity.end].isspace()
        and entity.end > entity.body_start
    )


def _is_attachment(headers: Head) -> bool:
    return headers.disposition == "attachment" or headers.named


def _boundary(entity: Entity) -> bytes:
    cte = entity.headers.transfer
    if cte not in _IDENTITY:
        raise MalformedMime(f"multipart with transfer encoding {cte!r}")
    boundary = entity.headers.boundary
    if not boundary:
        raise MalformedMime("multipart without boundary")
    try:
        return boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise MalformedMime("non-ASCII boundary") from exc


def _delimiters(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int, bool]]:
    """(line start, offset after the line, is close) of each delimiter line up to the close."""
    marker = b"--" + boundary
    found: list[tuple[int, int, bool]] = []
    pos = start
    while (hit := raw.find(marker, pos, end)) >= 0:
        pos = hit + len(marker)
        if hit != start and raw[hit - 1] != 0x0A:
            continue
        close = raw.startswith(b"--", pos, end)
        tail = pos + 2 if close else pos
        while tail < end and raw[tail] in (0x20, 0x09):
            tail += 1
        if raw.startswith(b"\r\n", tail, end):
            tail += 2
        elif raw.startswith(b"\n", tail, end):
            tail += 1
        elif tail != end:
            continue
        found.append((hit, tail, close))
        if close or len(found) > MAX_PARTS:
            break
    return found


def _split_multipart(raw: bytes, entity: Entity) -> list[tuple[int, int]]:
    """Byte ranges of the body parts; preamble, delimiters and epilogue stay outside."""
    lines = _delimiters(raw, entity.body_start, entity.end, _boundary(entity))
    if not lines or lines[0][2]:
        raise MalformedMime("multipart without a boundary line")
    if not lines[-1][2]:
        raise MalformedMime("unterminated multipart (no close delimiter)")
    parts = []
    for (_, part_start, _), (next_line, _, _) in itertools.pairwise(lines):
        part_end = next_line
        if raw.startswith(b"\r\n", next_line - 2, next_line) and next_line - 2 >= part_start:
            part_end = next_line - 2
        elif raw.startswith(b"\n", next_line - 1, next_line) and next_line - 1 >= part_start:
            part_end = next_line - 1
        parts.append((part_start, part_end))
    return parts


def decode_html(raw: bytes, entity: Entity) -> DecodedHtml:
    """The part's text, or PartLeftAlone when it would not encode back to the same bytes."""
    body = raw[entity.body_start : entity.end]
    transfer = entity.headers.transfer
    if transfer not in _TRANSFER:
        raise PartLeftAlone(f"unknown transfer encoding {transfer!r}")
    eol = line_ending(body)
    b64_line, b64_tail, data = QP_LINE, b"", body
    if transfer == "base64":
        try:
            b64_line, b64_tail, data = decode_base64(body, eol)
        except ValueError as exc:
            raise PartLeftAlone(str(exc)) from exc
    elif transfer == "quoted-printable":
        data = binascii.a2b_qp(body)
    if b"\x00" in data:  # UTF-16 or binary under a text label: not HTML we can read
        raise PartLeftAlone("NUL bytes in the HTML part (mislabelled charset?)")
    codec, errors = _charset(entity.headers.charset or "us-ascii")
    try:
        text = data.decode(codec, errors)
        exact = text.encode(codec, errors) == data
    except UnicodeError as exc:  # before ValueError: it is one
        raise PartLeftAlone(f"undecodable {codec} text") from exc
    except (LookupError, ValueError) as exc:  # ValueError: a NUL in the label
        raise PartLeftAlone(f"unknown charset {codec!r}") from exc
    if not exact:
        raise PartLeftAlone(f"{codec} text does not round-trip")
    if "-----BEGIN" in text and "-----BEGIN PGP" in text:  # the first finds faster
        raise PartLeftAlone("inline PGP in HTML part")
    return DecodedHtml(
        entity, text, codec, errors, transfer, eol, len(data), b64_line, b64_tail, data
    )


@lru_cache(maxsize=64)
def _charset(label: str) -> tuple[str, str]:
    """(codec name, error handler): surrogateescape only where bytes stay independent."""
    if not _CHARSET_LABEL.fullmatch(label):
        return label, "strict"  # decode raises LookupError: "unknown charset"
    if label in ("us-ascii", "ascii", "646", "us"):
        return "utf-8", "surrogateescape"
    try:
        probe = bytes(range(256)).decode(label, "surrogateescape")
        compatible = _ASCII_PROBE.encode(label) == _ASCII_PROBE.encode("ascii")
    except (LookupError, UnicodeError):
        return label, "strict"
    stateful = "2022" in label or label.startswith("hz")
    return label, "surrogateescape" if len(
        probe
    ) == 256 and compatible and not stateful else "strict"


def encode_html(
    raw: bytes, part: DecodedHtml, edits: list[tuple[int, int, str]]
) -> list[tuple[int, int, bytes]]:
    """Edits (start, end, new bytes) that put part.text, with the (start, end, replacement)
    edits made, back in the part's charset and encoding.

    A quoted-printable body gets only its touched lines re-encoded, and the new text is
    then never built whole.
    """
    entity = part.entity
    if part.transfer == "quoted-printable":
        patched = _patch_qp(raw, part, edits)
        if patched is not None:
            return [(entity.body_start, entity.end, patched)]
    try:
        data = apply_edits(part.text, edits).encode(part.codec, part.errors)
    except UnicodeError as exc:
        raise PartLeftAlone(f"rewritten HTML does not encode in {part.codec}") from exc
    body_edit = (entity.body_start, entity.end)
    if part.transfer == "base64":
        return [(*body_edit, encode_base64(data, part.b64_line, part.eol) + part.b64_tail)]
    if part.transfer == "quoted-printable":
        return [(*body_edit, encode_qp(data, part.eol))]
    if longest_line(data) <= MAX_LINE:
        return [(*body_edit, data)]
    head = set_header(
        raw[entity.start : entity.body_start], "Content-Transfer-Encoding", "quoted-printable"
    )
    return [(entity.start, entity.body_start, head), (*body_edit, encode_qp(data, part.eol))]


def _patch_qp(raw: bytes, part: DecodedHtml, edits: list[tuple[int, int, str]]) -> bytes | None:
    """The QP body with only the touched lines re-encoded, or None to encode it whole."""
    byte_edits = encode_edits(part.text, part.codec, part.errors, part.size, edits)
    if byte_edits is None:
        return None
    entity = part.entity
    body = raw[entity.body_start : entity.end]
    try:
        return patch_qp(body, part.data, byte_edits, part.eol)
    except ValueError:
        return None


def splice(raw: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """raw with each non-overlapping (start, end) range replaced."""
    pieces, cursor = [], 0
    for start, end, new in sorted(edits, key=lambda e: e[0]):
        pieces.append(raw[cursor:start])
        pieces.append(new)
        cursor = end
    pieces.append(raw[cursor:])
    return b"".join(pieces)
