"""What the rewriter reads from one MIME entity's header block, read as the email package would.

The email package (BytesHeaderParser, compat32) is the reference, and the
fallback: it costs about as much as the rest of a small message's rewrite, so
the usual header block (ASCII, one field per line, a Content-Type of
type/subtype with token or plain quoted parameters) is read here directly and
gives the same answers. Anything else (encoded words, RFC 2231 parameters,
comments, backslashes, bare CRs, 8-bit bytes) goes to the email package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from relay.rewrite.headers import iter_fields

_WANTED = ("content-type", "content-transfer-encoding", "content-disposition")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# A header block the fast path takes: field lines and their folded continuations, then
# at most the blank line; every line ends in "\n" except perhaps the last.
_SIMPLE_HEAD = re.compile(
    rb"(?:[\x21-\x39\x3b-\x7e]++:[^\n]*+(?:\n[ \t][^\n]*+)*+(?:\n|\Z))*+(?:\r?\n)?+"
)
_WANTED_FIELD = re.compile(
    rb"^(content-(?:type|transfer-encoding|disposition)):[ \t]*+([^\n]*+(?:\n[ \t][^\n]*+)*+)",
    re.IGNORECASE | re.MULTILINE,
)
_WS = r"[ \t\r\n]*+"
_TYPE_WORD = r"[A-Za-z0-9!#$%&'+.^_`{|}~-]++"  # RFC 2045 token, less "*" (RFC 2231 markers)
_VALUE = r"(?:\"[^\"\\]*+\"|[A-Za-z0-9!#$%&'*+.^_`{|}~-]++)"  # no backslash, no "<...>"
_PARAMS = re.compile(rf"{_WS}(?:;{_WS}(?:[A-Za-z0-9_-]++{_WS}={_WS}{_VALUE}{_WS})?+)*+\Z")
_PARAM = re.compile(rf";{_WS}([A-Za-z0-9_-]++){_WS}={_WS}(\"[^\"\\]*+\"|[^\t\r\n ;]++)")
_CONTENT_TYPE = re.compile(rf"{_WS}({_TYPE_WORD}/{_TYPE_WORD}){_WS}")
_DISPOSITION = re.compile(rf"{_WS}{_TYPE_WORD}{_WS}")


class MalformedMime(Exception):
    """The structure cannot be located unambiguously: relay the whole message untouched."""


@dataclass(frozen=True)
class Head:
    """The answers of email.message.Message that the rewriter uses, for one header block."""

    content_type: str  # get_content_type()
    charset: str | None  # get_content_charset()
    boundary: str | None  # get_boundary()
    transfer: str  # str(get("content-transfer-encoding", "7bit")).strip().lower()
    disposition: str  # str(get("content-disposition", "")).split(";")[0].strip().lower()
    named: bool  # get_param("name") is not None or get_filename() is not None


def read_head(head: bytes) -> Head:
    """The Head of a header block; MalformedMime when the email package would read it
    differently from the byte ranges the rewriter works on (or ambiguously)."""
    return _fast_head(head) or _stdlib_head(head)


def _stdlib_head(head: bytes) -> Head:
    """The reference: the email package's own parse of the block."""
    for item in iter_fields(head):
        if not _FIELD_NAME.match(head, item.start):
            raise MalformedMime("a header line is not a header field")
    headers = BytesHeaderParser(policy=compat32).parsebytes(head)
    for name in _WANTED:
        if len(headers.get_all(name, [])) > 1:
            raise MalformedMime(f"duplicate {name} header")
    return head_of(headers)


def head_of(headers: Message) -> Head:
    return Head(
        content_type=headers.get_content_type(),
        charset=headers.get_content_charset(),
        boundary=headers.get_boundary(),
        transfer=str(headers.get("content-transfer-encoding", "7bit")).strip().lower(),
        disposition=str(headers.get("content-disposition", "")).split(";")[0].strip().lower(),
        named=headers.get_param("name") is not None or headers.get_filename() is not None,
    )


def _fast_head(head: bytes) -> Head | None:
    """The same Head without the email package, or None for a block it must read."""
    if not head.isascii() or head.count(b"\r") != head.count(b"\r\n"):
        return None
    if _SIMPLE_HEAD.fullmatch(head) is None:
        return None
    values: dict[str, str] = {}
    duplicates = set()
    for found in _WANTED_FIELD.finditer(head):
        name = found.group(1).decode().lower()
        if name in values:
            duplicates.add(name)
        # compat32's value: leading blanks dropped, folds kept, trailing line breaks dropped
        values[name] = found.group(2).decode().rstrip("\r\n")
    for name in _WANTED:
        if name in duplicates:
            raise MalformedMime(f"duplicate {name} header")
    ctype = values.get("content-type")
    disposition = values.get("content-disposition")
    transfer = values.get("content-transfer-encoding", "7bit").strip().lower()
    type_params = _params(ctype, _CONTENT_TYPE) if ctype is not None else {}
    disposition_params = _params(disposition, _DISPOSITION) if disposition is not None else {}
    if type_params is None or disposition_params is None:
        return None
    charset = type_params.get("charset")
    boundary = type_params.get("boundary")
    return Head(
        content_type=ctype.split(";", 1)[0].strip().lower() if ctype is not None else "text/plain",
        charset=charset.lower() if charset is not None else None,
        boundary=_angle_stripped(boundary).rstrip() if boundary is not None else None,
        transfer=transfer,
        disposition=(disposition or "").split(";")[0].strip().lower(),
        named="name" in type_params or "filename" in disposition_params,
    )


def _params(value: str, first: re.Pattern[str]) -> dict[str, str] | None:
    """Parameters (lower-case name -> unquoted value, first one wins) of a simple value."""
    lead = first.match(value)
    if lead is None or _PARAMS.match(value, lead.end()) is None:
        return None
    params: dict[str, str] = {}
    for name, quoted in _PARAM.findall(value, lead.end()):
        unquoted = quoted[1:-1] if quoted[:1] == '"' else quoted
        params.setdefault(name.lower(), unquoted)
    return params


def _angle_stripped(value: str) -> str:
    """email.utils.unquote's second pass in get_boundary: "<b>" reads as "b"."""
    return value[1:-1] if len(value) > 1 and value[0] == "<" and value[-1] == ">" else value
