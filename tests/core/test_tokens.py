"""Example-based checks of the token format: compactness, strictness, rotation."""

from __future__ import annotations

import base64
import random
import tracemalloc

import pytest

from relay.core.tokens import (
    MAX_TOKEN_CHARS,
    VERIFIED_CACHE,
    InvalidToken,
    TokenCodec,
    TokenData,
)

URL = "https://shop.example.com/p?a=1&b=2#top"


def test_open_token_is_compact_and_round_trips() -> None:
    codec = TokenCodec(["newest"])
    token = codec.open_token(123_456_789)
    assert len(token) < 30
    assert len(codec.open_token(2**63)) < 40
    assert codec.verify(token) == TokenData(kind="open", copy_id=123_456_789)


def test_click_token_carries_the_exact_url() -> None:
    codec = TokenCodec(["newest"])
    data = codec.verify(codec.click_token(7, 3, URL))
    assert data == TokenData(kind="click", copy_id=7, link_index=3, url=URL)


def test_long_repetitive_url_is_deflated() -> None:
    codec = TokenCodec(["k"])
    url = "https://example.com/?" + "&".join(f"utm_param{i}=value" for i in range(100))
    token = codec.click_token(1, 0, url)
    assert len(token) < len(url)
    assert codec.verify(token).url == url


def test_url_too_long_for_a_token_is_refused_at_signing() -> None:
    codec = TokenCodec(["k"])
    incompressible = base64.urlsafe_b64encode(random.Random(0).randbytes(7000)).decode()
    with pytest.raises(ValueError, match="too long"):
        codec.click_token(1, 0, "https://example.com/" + incompressible)


def test_rotation_old_key_verifies_new_key_signs() -> None:
    old = TokenCodec(["old"])
    rotated = TokenCodec(["new", "old"])
    token = old.open_token(5)
    assert rotated.verify(token).copy_id == 5
    assert rotated.open_token(5) != token
    with pytest.raises(InvalidToken):
        old.verify(rotated.open_token(5))
    with pytest.raises(InvalidToken):
        TokenCodec(["new"]).verify(token)  # the old key was retired


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a",
        "!!!!",
        "AQC5YE4cIEjl8zI1b9M=",  # padding
        "AQC5YE4cIEjl8zI1b9M\n",
        "AQC5YE4cIEjl8zI1b+M",  # standard alphabet
        "é" * 20,
        "y" * 8100,
        "A" * (MAX_TOKEN_CHARS + 4),
    ],
)
def test_garbage_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidToken):
        TokenCodec(["k"]).verify(bad)


def test_non_canonical_base64_spelling_is_refused() -> None:
    codec = TokenCodec(["k"])
    token = codec.open_token(1)
    assert len(token) % 4 != 0  # the last character carries unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(token[-1])
    sibling = token[:-1] + alphabet[last + 1]  # same bytes, non-zero padding bits
    assert base64.urlsafe_b64decode(sibling + "=" * (-len(sibling) % 4)) == (
        base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    )
    with pytest.raises(InvalidToken):
        codec.verify(sibling)


def test_not_a_string_is_invalid() -> None:
    with pytest.raises(InvalidToken):
        TokenCodec(["k"]).verify(b"AQC5YE4cIEjl8zI1b9M")  # type: ignore[arg-type]


@pytest.mark.parametrize("keys", [[], [""], "single-string"])
def test_codec_needs_real_keys(keys: list[str]) -> None:
    with pytest.raises(ValueError):
        TokenCodec(keys)


def test_negative_numbers_cannot_be_signed() -> None:
    with pytest.raises(ValueError):
        TokenCodec(["k"]).open_token(-1)


def test_remembered_tokens_stay_bounded_and_forgeries_stay_out() -> None:
    codec = TokenCodec(["k"])
    genuine = codec.open_token(5)
    assert codec.verify(genuine) == codec.verify(genuine)  # the second from memory
    forged = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BA")
    for _ in range(2):  # a rejected token is never remembered as good
        with pytest.raises(InvalidToken):
            codec.verify(forged)
    with pytest.raises(InvalidToken):
        TokenCodec(["other"]).verify(genuine)  # memory is per codec, so per key set

    def verify_all(copy_ids: range) -> int:
        """Verify a fresh token of each; the memory traced afterwards."""
        for copy_id in copy_ids:
            assert codec.verify(codec.open_token(copy_id)).copy_id == copy_id
        return tracemalloc.get_traced_memory()[0]

    tracemalloc.start()
    try:
        start = verify_all(range(0))
        full = verify_all(range(VERIFIED_CACHE))
        after = verify_all(range(VERIFIED_CACHE, 4 * VERIFIED_CACHE))
    finally:
        tracemalloc.stop()
    assert after - full < (full - start) / 2  # three times as many more, hardly any more memory
