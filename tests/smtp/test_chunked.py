"""The block-wise DATA reader against a real StreamReader, fed in awkward pieces."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.smtp.chunked import read_data, unstuff


def stuff(message: bytes) -> bytes:
    """What smtplib puts on the wire for message: a dot doubled at every line start
    (after any LF, as smtplib does), terminator included."""
    stuffed = re.sub(rb"(?m)^\.", b"..", message)
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


async def read_fed(pieces: list[bytes], limit: int = 16, max_size: int = 10_000) -> tuple:
    reader = asyncio.StreamReader(limit=limit)
    for piece in pieces:
        reader.feed_data(piece)
    reader.feed_eof()
    result = await read_data(reader, max_size)
    rest = await reader.read()
    return result, rest


@pytest.mark.parametrize(
    ("wire", "content"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"end with dot.\r\nnext.\r\n.\r\n", b"end with dot.\r\nnext.\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"..leading\r\n...two\r\n.\r\n", b".leading\r\n..two\r\n"),
        (b"x\r\n..\r\n.\r\n", b"x\r\n.\r\n"),
        (b"bare\n.\nstill data\r\n.\r\n", b"bare\n\nstill data\r\n"),
        (b"bare\n..\nstuffed as smtplib does\r\n.\r\n", b"bare\n.\nstuffed as smtplib does\r\n"),
        (b"\xff\xfe 8-bit \x80\r\n.\r\n", b"\xff\xfe 8-bit \x80\r\n"),
    ],
)
async def test_terminator_and_unstuffing(wire: bytes, content: bytes) -> None:
    result, rest = await read_fed([wire + b"QUIT\r\n"])
    assert result.content == content
    assert not result.too_big
    assert rest == b"QUIT\r\n"  # pipelined commands after the dot stay unread


async def test_long_lines_are_kept_whole() -> None:
    line = b"<p>" + b"y" * 5000 + b"</p>\r\n"
    result, rest = await read_fed([line * 3, b".\r\nRSET\r\n"], limit=64, max_size=100_000)
    assert result.content == line * 3
    assert rest == b"RSET\r\n"


async def test_over_the_limit_is_drained_not_kept() -> None:
    wire = b"z" * 500 + b"\r\n" + b".\r\nQUIT\r\n"
    result, rest = await read_fed([wire], max_size=100)
    assert result.too_big and result.content == b""
    assert rest == b"QUIT\r\n"


async def test_eof_inside_data_is_a_lost_connection() -> None:
    with pytest.raises(ConnectionResetError):
        await read_fed([b"half a message\r\n"])


@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b"")), max_size=20),
    cut=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=30),
)
async def test_any_message_any_split(lines: list[bytes], cut: list[int]) -> None:
    message = b"".join(line + b"\r\n" for line in lines)
    wire = stuff(message) + b"NOOP\r\n"
    pieces, pos = [], 0
    for size in cut * (len(wire) // sum(cut) + 1):
        pieces.append(wire[pos : pos + size])
        pos += size
    result, rest = await read_fed([p for p in pieces if p], limit=8)
    assert result.content == message
    assert rest == b"NOOP\r\n"


def test_unstuff_only_touches_line_starts() -> None:
    assert unstuff(b"a.b\r\n..c\r\n.d") == b"a.b\r\n.c\r\nd"
