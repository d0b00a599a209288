"""Sessions a client controls, capped as Postfix's anvil and smtpd timeouts do."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib

from smtp.running import StartRelay, refusals


async def open_session(
    port: int, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    greeting = await asyncio.wait_for(reader.readline(), 5)
    return reader, writer, greeting


async def test_sessions_beyond_the_caps_get_421(start_relay: StartRelay) -> None:
    relay = await start_relay(max_sessions=5, max_sessions_per_address=3)
    sessions = [await open_session(relay.port, "127.0.0.2") for _ in range(4)]
    assert [g[:3] for _r, _w, g in sessions] == [b"220", b"220", b"220", b"421"]
    assert sessions[3][2].startswith(b"421 4.7.0 ")
    assert await sessions[3][0].read() == b""  # and closed
    others = [await open_session(relay.port, "127.0.0.3") for _ in range(3)]
    assert [g[:3] for _r, _w, g in others] == [b"220", b"220", b"421"]  # 5 in all
    assert refusals(relay.metrics) == {"session_limit": 2}
    for _reader, writer, _g in sessions + others:
        writer.close()
    await asyncio.sleep(0.2)
    _r, writer, greeting = await open_session(relay.port, "127.0.0.2")  # room again
    assert greeting.startswith(b"220")
    writer.close()


async def test_an_idle_session_ends_after_command_timeout(start_relay: StartRelay) -> None:
    relay = await start_relay(command_timeout=0.5)
    reader, writer, _greeting = await open_session(relay.port)
    writer.write(b"EHLO client.example\r\n")
    await writer.drain()
    lines = await asyncio.wait_for(reader.read(4096), 5)
    assert lines.startswith(b"250")
    rest = await asyncio.wait_for(reader.read(), 5)  # nothing more said: the relay hangs up
    assert rest.startswith(b"421 4.4.2")
    writer.close()


async def test_a_busy_session_ends_after_session_timeout(start_relay: StartRelay) -> None:
    relay = await start_relay(session_timeout=1.0)
    reader, writer, _greeting = await open_session(relay.port)
    seen = b""
    with contextlib.suppress(ConnectionError):
        for _ in range(40):  # a NOOP every 0.1 s resets the command timeout, not this one
            writer.write(b"NOOP\r\n")
            await writer.drain()
            await asyncio.sleep(0.1)
            seen += await asyncio.wait_for(reader.read(4096), 5)
            if reader.at_eof():
                break
    assert b"421 4.4.2" in seen and b"session time limit" in seen
    assert reader.at_eof()
    writer.close()


async def test_a_message_is_still_accepted_within_the_limits(start_relay: StartRelay) -> None:
    relay = await start_relay(max_sessions=1, max_sessions_per_address=1, session_timeout=30.0)

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@example.net"], b"Subject: hi\r\n\r\nhi\r\n")

    await asyncio.to_thread(send)
    await asyncio.sleep(0.1)
    await asyncio.to_thread(send)  # the first session's slot came back
    assert len(await relay.spooled()) == 2
