"""A message cut at the end of its header block, for tests that compare one side."""

from __future__ import annotations

from relay.rewrite.headers import head_end


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating blank line, body)."""
    end = head_end(raw)
    return raw[:end], raw[end:]
