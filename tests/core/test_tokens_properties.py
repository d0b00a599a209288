"""Hypothesis: tokens round-trip, and no mutation of a valid token ever verifies."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.tokens import InvalidToken, TokenCodec, TokenData

KEYS = ["current-key", "previous-key"]
CODEC = TokenCodec(KEYS)
copy_ids = st.integers(min_value=0, max_value=2**63)
link_indexes = st.integers(min_value=0, max_value=2**32)
urls = st.text(max_size=1000) | st.text(alphabet="abc/?=&%", max_size=4000)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@st.composite
def tokens(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return CODEC.open_token(draw(copy_ids))
    return CODEC.click_token(draw(copy_ids), draw(link_indexes), draw(urls))


@given(copy_ids)
def test_open_round_trip(copy_id: int) -> None:
    token = CODEC.open_token(copy_id)
    assert len(token) < 40
    assert CODEC.verify(token) == TokenData(kind="open", copy_id=copy_id)


@given(copy_ids, link_indexes, urls)
def test_click_round_trip(copy_id: int, link_index: int, url: str) -> None:
    data = CODEC.verify(CODEC.click_token(copy_id, link_index, url))
    assert data == TokenData(kind="click", copy_id=copy_id, link_index=link_index, url=url)


@given(st.text(alphabet=st.characters(codec="utf-8") | st.characters(), max_size=300))
def test_any_string_unicode_and_surrogates_round_trip(url: str) -> None:
    assert CODEC.verify(CODEC.click_token(1, 2, url)).url == url


@given(tokens(), st.data())
def test_any_single_character_change_is_invalid(token: str, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c != token[pos]))
    with pytest.raises(InvalidToken):
        CODEC.verify(token[:pos] + replacement + token[pos + 1 :])


@given(tokens(), st.data())
def test_any_single_byte_change_is_invalid(token: str, data: st.DataObject) -> None:
    raw = bytearray(_decode(token))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidToken):
        CODEC.verify(_encode(bytes(raw)))


@given(tokens(), st.data())
def test_truncation_is_invalid(token: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(token) - 1))
    with pytest.raises(InvalidToken):
        CODEC.verify(token[:cut])


@given(tokens(), st.text(min_size=1, max_size=20), st.binary(min_size=1, max_size=20))
def test_extension_is_invalid(token: str, suffix: str, raw_suffix: bytes) -> None:
    with pytest.raises(InvalidToken):
        CODEC.verify(token + suffix)
    with pytest.raises(InvalidToken):
        CODEC.verify(_encode(_decode(token) + raw_suffix))


@given(st.text(max_size=200) | st.text(alphabet=B64, max_size=200))
def test_random_strings_never_raise_anything_else(text: str) -> None:
    try:
        data = CODEC.verify(text)
    except InvalidToken:
        return
    assert isinstance(data, TokenData)  # only a forged MAC could get here


@given(st.text(min_size=1, max_size=50).filter(lambda k: k not in KEYS), copy_ids)
def test_unknown_key_is_invalid(key: str, copy_id: int) -> None:
    with pytest.raises(InvalidToken):
        CODEC.verify(TokenCodec([key]).open_token(copy_id))


@given(copy_ids, link_indexes, urls)
def test_rotation_keeps_old_tokens_valid(copy_id: int, link_index: int, url: str) -> None:
    old = TokenCodec(KEYS[1:]).click_token(copy_id, link_index, url)
    rotated = TokenCodec(["brand-new", *KEYS])
    assert rotated.verify(old).url == url
    assert TokenCodec(["brand-new"]).verify(rotated.open_token(copy_id)).copy_id == copy_id
    with pytest.raises(InvalidToken):
        TokenCodec(["brand-new"]).verify(old)


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
