"""HMAC-signed compact tokens: the contract between the relay and the HTTP server.

A click token carries the destination URL itself, so a valid click redirects
even when the store is down. Keys rotate: sign with the newest, verify with any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


class InvalidToken(Exception):
    """Any malformed, truncated, tampered or unknown-key token."""


@dataclass(frozen=True)
class TokenData:
    kind: Literal["open", "click"]
    copy_id: int
    link_index: int | None = None  # clicks
    url: str | None = None  # clicks: the exact original URL


class TokenCodec:
    def __init__(self, keys: Sequence[str]) -> None:
        """keys: newest first; the first signs, all verify."""
        raise NotImplementedError

    def open_token(self, copy_id: int) -> str:
        raise NotImplementedError

    def click_token(self, copy_id: int, link_index: int, url: str) -> str:
        raise NotImplementedError

    def verify(self, token: str) -> TokenData:
        raise NotImplementedError
