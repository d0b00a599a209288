"""Reading the DATA section in large blocks instead of line by line.

aiosmtpd reads DATA with one ``readuntil(b"\\r\\n")`` per line and rejects
lines over 1001 octets. Real clients send longer lines, and the per-line
calls dominate the cost of receiving. Here the stream is scanned for
``.\\r\\n``; a hit is the end of data only when the dot starts a line. The
stream is never read past the terminator, so pipelined commands that follow
stay in the reader for the command loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

_DOT_LINE = b".\r\n"


@dataclass(frozen=True)
class DataResult:
    """The unstuffed message, or too_big when the client sent more than the limit."""

    content: bytes
    too_big: bool
    wire_size: int


def unstuff(wire: bytes) -> bytes:
    """Undo dot-stuffing (RFC 5321 section 4.5.2): drop a dot that starts a line.

    A line may start after a bare LF too: smtplib stuffs a dot there and Postfix
    unstuffs it, so we do the same, or a relayed bare-LF line would gain a dot.
    Only <CRLF>.<CRLF> ends the data (read_data), so this opens no smuggling.
    """
    if wire.startswith(b"."):
        wire = wire[1:]
    return wire.replace(b"\n.", b"\n")


async def read_data(
    reader: asyncio.StreamReader,
    max_size: int,
    on_progress: Callable[[], None] | None = None,
) -> DataResult:
    """Read up to and including the terminating ``<CRLF>.<CRLF>``.

    More than max_size octets are drained and discarded (bounded memory) and
    reported as too_big, so the client gets its 552 after the data, in sync.
    """
    parts: list[bytes] = []
    size = 0
    too_big = False
    tail = b"\r\n"  # the CRLF that ended the DATA command line
    while True:
        try:
            piece = await reader.readuntil(_DOT_LINE)
            found = True
        except asyncio.LimitOverrunError as exc:
            # No terminator can start in the first exc.consumed octets.
            piece = await reader.read(exc.consumed)
            found = False
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("connection closed during DATA") from exc
        if not piece:
            raise ConnectionResetError("connection closed during DATA")
        if on_progress is not None:
            on_progress()
        recent = piece if len(piece) >= 5 else tail + piece
        before = recent[-5:-3] if found else b""
        if found and before == b"\r\n":
            piece = piece[: -len(_DOT_LINE)]
        size += len(piece)
        if size > max_size:
            too_big = True
            parts.clear()
        elif piece:
            parts.append(piece)
        if found and before == b"\r\n":
            break
        tail = recent[-2:]
    content = b"" if too_big else unstuff(b"".join(parts))
    return DataResult(content=content, too_big=too_big, wire_size=size)
