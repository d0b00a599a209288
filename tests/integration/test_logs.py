"""The relay's log as an operator reads it: one line per SMTP transaction and per delivery
attempt, access lines for the admin listener, JSON when asked, no per-command noise."""

from __future__ import annotations

import json
import signal
import smtplib
import urllib.request
from pathlib import Path

from support.processes import SinkHandler, spawn_relay, wait_for_port, write_config

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: logs\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><body><p>Hello Bob, the minutes are attached.</p></body></html>\r\n"
)


def test_json_log_lines_an_operator_can_follow(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    config, ports = write_config(tmp_path, sink_port)
    config.write_text(
        config.read_text(encoding="utf-8") + '[log]\nformat = "json"\n', encoding="utf-8"
    )
    log = tmp_path / "relay.log"
    proc = spawn_relay(config, log=log)
    try:
        wait_for_port(ports["admin"], proc)
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@example.net", "carol@example.org"], MESSAGE)
        handler.wait_for(2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['admin']}/api/messages",
            headers={"Authorization": "Bearer t0ken", "User-Agent": "ops-check/1.0"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    messages = [e["message"] for e in entries]
    [transaction] = [m for m in messages if m.startswith("client=")]
    assert "from=<alice@example.com>" in transaction
    assert "to=<bob@example.net>,<carol@example.org>" in transaction
    assert (
        f"size={len(MESSAGE)}" in transaction and "reply='250 2.0.0 Ok: queued as " in transaction
    )
    attempts = [m for m in messages if m.startswith("copy=")]
    assert len(attempts) == 2
    assert all("status=delivered" in m and "delay=" in m for m in attempts)
    assert all("upstream_id=SINK" in m for m in attempts)  # the sink's "queued as SINKn"
    assert any('"GET /api/messages HTTP/1.1" 200' in m and "ops-check/1.0" in m for m in messages)
    assert not any(e["logger"] == "mail.log" for e in entries)  # aiosmtpd's per-command lines
