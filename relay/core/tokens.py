"""HMAC-signed compact tokens: the contract between the relay and the HTTP server.

A click token carries the destination URL itself, so a valid click redirects
even when the store is down. Keys rotate: sign with the newest, verify with any.

Layout, URL-safe base64 without padding::

    version (1 byte) | flags (1 byte: bit 0 click, bit 1 URL deflated) | copy_id varint
    [click: link_index varint | URL bytes (UTF-8, raw deflate when shorter)]
    | HMAC-SHA256(key, DOMAIN + everything before)[:10]

Verification is strict and cheap before it is expensive: length, alphabet and
canonical base64 first, then the MAC against every key, and only then parsing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

VERSION = 1
MAC_BYTES = 10  # 80 bits
MAX_TOKEN_CHARS = 8192
MAX_VARINT = 2**64 - 1
MAX_URL_BYTES = MAX_TOKEN_CHARS  # a decoded URL can never be longer than its token
# The honeypot link is a click token with this reserved link index (real links
# are numbered from 0 and a message never has this many): the delivery side
# writes it, the tracking side classifies a click on it as a bot.
HONEYPOT_LINK_INDEX = 65535
_DOMAIN = b"mail-tracking-relay/token/v1\x00"
_KEY_LABEL = b"mail-tracking-relay/token-key\x00"
_FLAG_CLICK = 0x01
_FLAG_DEFLATED = 0x02
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")
VERIFIED_CACHE = 4096  # genuine tokens remembered per codec
VERIFIED_CACHE_CHARS = 512  # longer ones (click URLs) are checked each time


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
        if isinstance(keys, str) or not keys or not all(keys):
            raise ValueError("TokenCodec needs a list of non-empty keys, newest first")
        # Hash each key with a label: any string length gives a full-strength HMAC key,
        # and these keys are never confused with the same secret used elsewhere.
        self._macs = [
            hmac.new(hashlib.sha256(_KEY_LABEL + k.encode("utf-8")).digest(), _DOMAIN, "sha256")
            for k in keys
        ]
        self._verified: dict[str, TokenData] = {}

    def open_token(self, copy_id: int) -> str:
        return self._sign(bytes([VERSION, 0]) + _varint(copy_id))

    def click_token(self, copy_id: int, link_index: int, url: str) -> str:
        """Raises ValueError when the URL is too long for a token (over ~6 KB)."""
        extra_flags, data = _pack_url(url)
        flags = _FLAG_CLICK | extra_flags
        token = self._sign(bytes([VERSION, flags]) + _varint(copy_id) + _varint(link_index) + data)
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("URL too long to fit in a tracking token")
        return token

    def verify(self, token: str) -> TokenData:
        """The token's data, or InvalidToken; no other exception for any input.

        A genuine token is remembered (bounded, oldest out first): one pixel is
        fetched again and again (every open, every image proxy), and its MAC
        costs more than the rest of the answer. The keys never change for a
        codec, so a remembered token stays genuine; a bad one is never kept.
        """
        if isinstance(token, str):
            known = self._verified.get(token)
            if known is not None:
                return known
        data = self._verify(token)
        if len(token) <= VERIFIED_CACHE_CHARS:
            if len(self._verified) >= VERIFIED_CACHE:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = data
        return data

    def _verify(self, token: str) -> TokenData:
        raw = _strict_b64decode(token)
        if len(raw) < 3 + MAC_BYTES:
            raise InvalidToken("token too short")
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if not any(hmac.compare_digest(self._mac(m, body), mac) for m in self._macs):
            raise InvalidToken("bad signature")
        try:
            return _parse(body)
        except (ValueError, IndexError, zlib.error) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidToken(f"malformed token: {exc}") from None

    def _sign(self, body: bytes) -> str:
        mac = self._mac(self._macs[0], body)
        return base64.urlsafe_b64encode(body + mac).rstrip(b"=").decode("ascii")

    @staticmethod
    def _mac(base: hmac.HMAC, body: bytes) -> bytes:
        mac = base.copy()
        mac.update(body)
        return mac.digest()[:MAC_BYTES]


@functools.lru_cache(maxsize=1024)
def _pack_url(url: str) -> tuple[int, bytes]:
    """The URL's bytes, deflated when that is shorter; cached, as every copy of a
    message packs the same links."""
    data = url.encode("utf-8", "surrogatepass")
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packer.compress(data) + packer.flush()
    if len(deflated) < len(data):
        return _FLAG_DEFLATED, deflated
    return 0, data


def _strict_b64decode(token: object) -> bytes:
    """Only the canonical unpadded URL-safe form decodes: one token, one spelling."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken("not a token")
    if not _ALPHABET.fullmatch(token) or len(token) % 4 == 1:
        raise InvalidToken("not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not URL-safe base64") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("non-canonical base64")
    return raw


def _parse(body: bytes) -> TokenData:
    """Parse an authenticated body; still strict, since any key holder could be buggy."""
    if body[0] != VERSION:
        raise ValueError("unknown version")
    flags = body[1]
    copy_id, pos = _read_varint(body, 2)
    if flags == 0:
        if pos != len(body):
            raise ValueError("trailing bytes")
        return TokenData(kind="open", copy_id=copy_id)
    if flags & ~(_FLAG_CLICK | _FLAG_DEFLATED) or not flags & _FLAG_CLICK:
        raise ValueError("unknown flags")
    link_index, pos = _read_varint(body, pos)
    data = body[pos:]
    if flags & _FLAG_DEFLATED:
        data = _inflate(data)
    url = data.decode("utf-8", "surrogatepass")
    return TokenData(kind="click", copy_id=copy_id, link_index=link_index, url=url)


def _inflate(data: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15)
    out = unpacker.decompress(data, MAX_URL_BYTES)
    if unpacker.unconsumed_tail or not unpacker.eof or unpacker.unused_data:
        raise ValueError("bad or oversized deflate stream")
    return out


def _varint(value: int) -> bytes:
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"token numbers must be 0..2**64-1, not {value}")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """LEB128, minimal encoding only, at most 10 bytes."""
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and i > pos:
                raise ValueError("non-minimal varint")
            if value > MAX_VARINT:
                raise ValueError("varint too large")
            return value, i + 1
        shift += 7
    raise ValueError("truncated varint")
