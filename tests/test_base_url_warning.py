"""The start-up warning when SMTP serves other hosts but links point nowhere they can reach."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support.processes import free_port, spawn_relay, wait_for_port

from relay.cli import base_url_warning
from relay.core.config import Config, HostPort, SmtpConfig, TrackingConfig


def config(listen: str, base_url: str) -> Config:
    host, port = listen.rsplit(":", 1)
    return Config(
        smtp=SmtpConfig(listen=(HostPort(host, int(port)),)),
        tracking=TrackingConfig(base_url=base_url),
    )


@pytest.mark.parametrize(
    ("listen", "base_url", "says"),
    [
        ("127.0.0.1:2525", "http://127.0.0.1:8080", ""),  # a laptop: nothing to say
        ("0.0.0.0:25", "http://127.0.0.1:8080", "recipients cannot reach it"),
        ("10.0.0.5:587", "http://localhost:8080", "recipients cannot reach it"),
        ("10.0.0.5:587", "http://t.example.com", "plain http links"),
        ("10.0.0.5:587", "https://t.example.com", ""),
    ],
)
def test_warning(listen: str, base_url: str, says: str) -> None:
    warning = base_url_warning(config(listen, base_url))
    assert (says in warning) if says else warning == ""


def test_relay_serve_warns_once_at_start(tmp_path: Path) -> None:
    smtp, tracking, admin = free_port(), free_port(), free_port()
    path = tmp_path / "relay.toml"
    path.write_text(
        f'[smtp]\nlisten = "0.0.0.0:{smtp}"\nallowed_networks = ["127.0.0.0/8"]\n'
        f'[tracking]\nlisten = "127.0.0.1:{tracking}"\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\n',
        encoding="utf-8",
    )
    proc = spawn_relay(path)
    wait_for_port(admin, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    lines = [line for line in err.decode().splitlines() if "tracking.base_url" in line]
    assert len(lines) == 1, err.decode()
    assert "recipients cannot reach it" in lines[0]
