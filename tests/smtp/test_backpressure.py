"""Back-pressure (452 4.3.1 when the queue is full) and a full disk (451, never 250).

The full disk is real: the store lives on a 2 MB tmpfs that a filler file fills up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from smtp.running import StartRelay, in_thread, smtp_config

from relay.core.config import Config, StoreConfig
from relay.core.models import DeliveryOutcome
from relay.core.store import open_store
from relay.smtp.auth import AuthThrottle
from relay.smtp.backpressure import REFRESH_SECONDS
from relay.smtp.server import start_smtp

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\n\r\nhello\r\n"


def send(port: int, rcpts: list[str], data: bytes = MESSAGE) -> tuple[int, bytes]:
    """(code, text) of the last reply of a transaction: MAIL's, RCPT's or DATA's."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        code, text = client.mail("a@example.com")
        if code != 250:
            return code, text
        for rcpt in rcpts:
            client.rcpt(rcpt)
        return client.data(data)


async def test_full_queue_gets_452_at_mail_and_room_again_after_delivery(
    start_relay: StartRelay,
) -> None:
    relay = await start_relay(max_queued_copies=3)
    assert (await in_thread(send, relay.port, ["b@example.net", "c@example.net"]))[0] == 250
    assert (await in_thread(send, relay.port, ["d@example.net"]))[0] == 250
    code, text = await in_thread(send, relay.port, ["e@example.net"])
    assert (code, text) == (452, b"4.3.1 Insufficient system storage")
    assert len(await relay.spooled()) == 2
    # Once copies leave the queue, new mail is accepted again (after the next recount).
    for _message, _raw, copies in await relay.spooled():
        for copy in copies:
            await relay.store.record_outcome(copy.id, DeliveryOutcome("delivered", "250 ok"), None)
    await asyncio.sleep(REFRESH_SECONDS + 0.1)
    assert (await in_thread(send, relay.port, ["e@example.net"]))[0] == 250


async def test_a_reload_applies_a_new_queue_limit_to_the_next_message(
    start_relay: StartRelay,
) -> None:
    """SIGHUP (SmtpServers.reload) with a lower max_queued_copies: the next MAIL past it
    gets 452; raised again, mail is taken again. The limit was read once, at start."""
    relay = await start_relay(max_queued_copies=100)
    assert (await in_thread(send, relay.port, ["b@example.net", "c@example.net"]))[0] == 250
    lower = dataclasses.replace(relay.config.smtp, max_queued_copies=2)
    relay.servers.reload(dataclasses.replace(relay.config, smtp=lower))
    code, text = await in_thread(send, relay.port, ["d@example.net"])
    assert (code, text) == (452, b"4.3.1 Insufficient system storage")
    relay.servers.reload(relay.config)
    assert (await in_thread(send, relay.port, ["d@example.net"]))[0] == 250
    assert len(await relay.spooled()) == 2


@contextlib.contextmanager
def tiny_filesystem(path: Path) -> Iterator[Path]:
    """A real 2 MB tmpfs (the tests run as root), unmounted afterwards."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    """Write until the filesystem refuses: ENOSPC."""
    with open(path, "wb") as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 65536)
                out.flush()
                os.fsync(out.fileno())


async def test_disk_full_while_spooling_gets_451_never_250(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "tiny") as tiny:
        store = open_store(StoreConfig(path=str(tiny / "relay.db")))
        await store.open()
        config = Config(smtp=smtp_config())
        servers = await start_smtp(config, store, lambda: None, throttle=AuthThrottle())
        try:
            port = servers.addresses()[0][1]
            fill(tiny / "filler")
            big = MESSAGE + b"x" * 200_000 + b"\r\n"
            code, text = await in_thread(send, port, ["b@example.net"], big)
            assert code == 451 and text.startswith(b"4.3.0"), (code, text)
            assert await store.count_queued() == 0
            (tiny / "filler").unlink()  # space again: the same message is accepted
            assert (await in_thread(send, port, ["b@example.net"], big))[0] == 250
            assert await store.count_queued() == 1
        finally:
            await servers.close(grace=1.0)
            await store.close()


async def test_full_queue_refuses_at_data_too(start_relay: StartRelay) -> None:
    """A session that passed MAIL before the queue filled is refused at DATA."""
    relay = await start_relay(max_queued_copies=1)

    def two_sessions() -> tuple[int, int]:
        with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as first:
            first.ehlo("client.test")
            assert first.mail("a@example.com")[0] == 250
            assert first.rcpt("b@example.net")[0] == 250
            accepted = send(relay.port, ["c@example.net"])[0]
            return accepted, first.data(MESSAGE)[0]

    assert await in_thread(two_sessions) == (250, 452)
