"""A byte-level oracle: outside the HTML body parts, not one byte of a message may change.

mime_checks compares trees through the email package; this compares raw bytes,
using the rewriter's own survey only to find where the HTML parts are, so a
change anywhere else (headers, preamble, delimiters, other leaves) is caught.
"""

from __future__ import annotations

import re

from relay.rewrite import Rewritten
from relay.rewrite.headers import head_end, header_values, iter_fields
from relay.rewrite.mime import survey

_CTE = b"content-transfer-encoding"


def assert_only_html_bodies_changed(raw: bytes, result: Rewritten) -> None:
    """Every byte outside the text/html body parts is kept; a head may only switch to QP."""
    out = result.raw
    if out == raw:
        return
    entities = survey(raw).html_bodies
    fixed, cursor = [], 0
    for entity in entities:
        fixed.append(raw[cursor : entity.start])
        cursor = entity.end
    fixed.append(raw[cursor:])
    pattern = b"(.*?)".join(re.escape(piece) for piece in fixed)
    match = re.fullmatch(pattern, out, re.DOTALL)
    assert match is not None, "bytes outside the HTML parts changed"
    for entity, new_part in zip(entities, match.groups(), strict=True):
        old_head = raw[entity.start : entity.body_start]
        if new_part.startswith(old_head):
            continue
        new_head = new_part[: head_end(new_part)]
        assert _without_cte(old_head) == _without_cte(new_head), "a part head changed"
        assert header_values(new_head, "Content-Transfer-Encoding") == ["quoted-printable"]


def _without_cte(head: bytes) -> bytes:
    """The head's fields but Content-Transfer-Encoding, in order and byte for byte."""
    fields = [head[f.start : f.end] for f in iter_fields(head) if f.name != _CTE]
    return b"".join(fields)
