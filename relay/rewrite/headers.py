"""Surgical operations on a message's header block (pure bytes -> bytes).

Headers are never refolded or re-encoded: lines are found, dropped or added
in place, keeping the message's own line ending.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def header_values(raw: bytes, name: str) -> list[str]:
    """Unfolded values of every top-level header called name (case-insensitive)."""
    raise NotImplementedError


def remove_headers(raw: bytes, names: Collection[str]) -> bytes:
    """raw without the top-level headers in names (with their folded lines)."""
    raise NotImplementedError


def prepend_headers(raw: bytes, lines: Sequence[str]) -> bytes:
    """raw with "Name: value" lines added on top, in the message's line ending."""
    raise NotImplementedError
