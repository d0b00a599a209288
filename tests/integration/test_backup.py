"""`relay backup FILE` while the relay records events: a copy that opens and holds them."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
from pathlib import Path

import aiohttp
from support.processes import (
    SinkHandler,
    relay_one,
    run_relay,
    start_role,
    stop_role,
    write_config,
)

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: backup\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><img src="https://example.com/logo.png" alt="Example">'
    b"<p>Hello Bob, the quarterly numbers are in.</p></body></html>\r\n"
)
READER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Thunderbird/128.0"}


async def backup(config: Path, target: Path) -> tuple[int, str, str]:
    return await run_relay(
        "backup", "--config", str(config), str(target), cwd=config.parent, seconds=120
    )


async def test_backup_under_load_opens_with_the_events(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    config, ports = write_config(tmp_path, sink_port)
    relay = start_role("serve", config, ports["tracking"])
    try:
        delivered = relay_one(ports["smtp"], handler, MESSAGE)
        pixel = re.search(rb'src="(http://[^"]+/o/[^"]+)"', delivered)
        assert pixel is not None
        stop = asyncio.Event()

        async def load(http: aiohttp.ClientSession) -> int:
            count = 0
            while not stop.is_set():
                async with http.get(pixel.group(1).decode()) as answer:
                    assert answer.status == 200
                count += 1
            return count

        async with aiohttp.ClientSession(headers=READER) as http:
            loaders = [asyncio.create_task(load(http)) for _ in range(4)]
            await asyncio.sleep(0.5)
            code, out, err = await backup(config, tmp_path / "copy.db")
            stop.set()
            answered = sum(await asyncio.gather(*loaders))
        assert (code, err) == (0, ""), err
        assert "backed up" in out
        target = tmp_path / "copy.db"
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        copy = sqlite3.connect(target)
        try:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            events = copy.execute("SELECT count(*) FROM events").fetchone()[0]
            messages = copy.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            copy.close()
        assert messages == 1
        assert 0 < events <= answered
        assert not [n for n in os.listdir(tmp_path) if n.startswith(".copy")]  # no temporary
    finally:
        stop_role(relay)


async def test_backup_refuses_the_store_itself_and_a_missing_store(tmp_path: Path) -> None:
    config, _ports = write_config(tmp_path, 25)
    code, _out, err = await backup(config, tmp_path / "relay.db")
    assert code == 2 and "backup:" in err and err.count("\n") == 1
    code, _out, err = await backup(config, tmp_path / "copy.db")
    assert code == 2 and "no store there" in err
    assert not (tmp_path / "copy.db").exists()
