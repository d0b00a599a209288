"""`relay serve`'s /metrics: both HTTP listeners' latency histograms and process metrics."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from support.processes import relay_toml, start_relay, stop_relay


def get(url: str, token: str | None = None) -> bytes:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def test_metrics_of_a_running_relay(tmp_path: Path) -> None:
    relay = start_relay(tmp_path, relay_toml(f"maildir:{tmp_path / 'outbox'}"))
    try:
        get(f"{relay.tracking_url}/o/not-a-token.gif")
        get(f"{relay.admin_url}/api/messages", relay.admin_token)
        text = get(f"{relay.admin_url}/metrics", relay.admin_token).decode()
    finally:
        stop_relay(relay)
    assert (
        'relay_http_request_duration_seconds_count{listener="tracking",route="/o/{token}.gif"} 1.0'
        in text
    )
    assert (
        'relay_http_request_duration_seconds_count{listener="admin",route="/api/messages"} 1.0'
        in text
    )
    assert "process_resident_memory_bytes" in text and "python_gc_collections_total" in text
