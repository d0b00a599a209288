"""SIGHUP on a running relay: policy, certificate, webhooks and log level change without a
restart; a broken config changes nothing; keys that need a restart are named."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import ssl
import subprocess
from pathlib import Path

import aiohttp
import trustme
from aiohttp import web
from support.processes import (
    SinkHandler,
    free_port,
    spawn_relay,
    wait_for_port,
)

MESSAGE = (
    b"From: alice@example.com\r\nSubject: reload\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><p>Hello, here is <a href="https://example.com/agenda">the agenda</a>'
    b" for Monday.</p></body></html>\r\n"
)


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(pem))
    return pem, key, ca


def config_text(ports: dict[str, int], sink: int, pem: Path, key: Path, extra: str) -> str:
    return (
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\nmax_recipients = 1\n'
        f'tls_cert = "{pem}"\ntls_key = "{key}"\n'
        f'[upstream]\nurl = "smtp://127.0.0.1:{sink}"\n'
        f'[tracking]\nbase_url = "http://127.0.0.1:{ports["tracking"]}"\n'
        f'listen = "127.0.0.1:{ports["tracking"]}"\n'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "t0ken"\n' + extra
    )


def send(port: int, rcpts: list[str], ca: trustme.CA) -> dict[str, tuple[int, bytes]]:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)  # fails unless the relay presents ca's certificate
        return client.sendmail("alice@example.com", rcpts, MESSAGE)


def read_from(log: Path, offset: int) -> str:
    return log.read_bytes()[offset:].decode(errors="replace")


async def hangup(proc: subprocess.Popen[bytes], log: Path, marker: str) -> str:
    """SIGHUP, then the log lines it caused (up to the line containing marker)."""
    before = len(read_from(log, 0).encode())
    proc.send_signal(signal.SIGHUP)
    for _ in range(200):
        await asyncio.sleep(0.05)
        text = read_from(log, before)
        if marker in text:
            return text
    raise AssertionError(f"no {marker!r} after SIGHUP: {read_from(log, 0)[-2000:]}")


async def test_sighup_applies_the_new_config_and_refuses_a_broken_one(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    first_pem, first_key, first_ca = certificate(tmp_path, "first")
    second_pem, second_key, second_ca = certificate(tmp_path, "second")
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    hooks = web.Application()
    hooks.router.add_post("/hook", hook)
    runner = web.AppRunner(hooks)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    config = tmp_path / "relay.toml"
    config.write_text(config_text(ports, sink_port, first_pem, first_key, ""), encoding="utf-8")
    log = tmp_path / "relay.log"
    proc = spawn_relay(config, log=log)
    try:
        wait_for_port(ports["admin"], proc)
        two = ["bob@example.net", "carol@example.org"]
        refused = await asyncio.to_thread(send, ports["smtp"], two, first_ca)
        assert set(refused) == {"carol@example.org"}  # max_recipients = 1

        # New policy, certificate, a webhook and a quieter log; a restart-only key too.
        extra = f'[[webhooks]]\nurl = "{hook_url}"\nsecret = "s3cret"\nevents = ["click"]\n'
        text = config_text(ports, sink_port, second_pem, second_key, extra)
        text = text.replace("max_recipients = 1", "max_recipients = 5")
        text = text.replace("[admin]\n", "[admin]\nmax_connections = 99\n")
        config.write_text(text + '[log]\nlevel = "warning"\n', encoding="utf-8")
        said = await hangup(proc, log, "a restart applies it")
        assert "admin.max_connections" in said
        assert await asyncio.to_thread(send, ports["smtp"], two, second_ca) == {}
        delivered = await asyncio.to_thread(handler.wait_for, 3)
        link = re.search(rb'href="(http://[^"]+/c/[^"]+)"', delivered[-1].data)
        assert link is not None
        await asyncio.sleep(3)  # a click sooner than bot_click_window is a bot's, still sent
        async with aiohttp.ClientSession(headers={"User-Agent": "Firefox/128.0"}) as http:
            async with http.get(link.group(1).decode(), allow_redirects=False) as answer:
                assert answer.status == 302
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.1)
        assert received and received[0]["type"] == "click"

        # A broken config: one line naming the key, the running config stays.
        config.write_text(text.replace("max_recipients = 5", "max_recipientz = 5"))
        said = await hangup(proc, log, "the old one stays")
        assert "max_recipientz" in said
        assert proc.poll() is None
        assert await asyncio.to_thread(send, ports["smtp"], two, second_ca) == {}
        quiet = read_from(log, 0)
        assert "client=127.0.0.1" not in quiet.split("a restart applies it")[-1]  # level warning
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0
        await runner.cleanup()
