"""Split deployment: `relay smtp` and `relay http` as two processes sharing one store."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from support.processes import SinkHandler, relay_one, start_role, stop_role, write_config

BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
}

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: split\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><a href="https://example.com/offer">offer</a></body></html>\r\n'
)


async def test_smtp_and_http_roles_share_the_store(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    config, ports = write_config(
        tmp_path,
        sink_port,
        tracking='bot_click_window = "0s"\n',
        more='[store]\npath = "shared.db"\n',
    )
    smtp_role = start_role("smtp", config, ports["smtp"])
    http_role = start_role("http", config, ports["tracking"])
    try:
        delivered = relay_one(ports["smtp"], handler, MESSAGE)
        link = re.search(rb'href="(http://127\.0\.0\.1:\d+/c/[^"]+)"', delivered)
        assert link is not None
        async with aiohttp.ClientSession(headers=BROWSER) as http:
            async with http.get(link.group(1).decode(), allow_redirects=False) as answer:
                assert answer.status == 302
                assert answer.headers["Location"] == "https://example.com/offer"
            auth = {"Authorization": "Bearer t0ken"}
            api = f"http://127.0.0.1:{ports['admin']}/api/messages"
            async with http.get(api, headers=auth) as answer:
                [summary] = (await answer.json())["messages"]
        assert summary["subject"] == "split"
        assert summary["clicks"]["human"] == 1
    finally:
        stop_role(smtp_role)
        stop_role(http_role)
