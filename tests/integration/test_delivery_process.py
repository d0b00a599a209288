"""The delivery process of `relay serve`: metrics, restart after a crash, one per store."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from pathlib import Path

from integration.test_queue_operations import admin_get, config, message, sink_on, tags_of
from support.processes import RelayProcess, free_port, start_relay, stop_relay


def send(relay: RelayProcess, *tags: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        for tag in tags:
            client.sendmail("a@example.com", ["b@example.net"], message(tag))


def deliverer(workdir: Path) -> int:
    """The pid that holds the store's delivery lock (it writes it there)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = (workdir / "relay.db.deliver.lock").read_text().strip()
        if text.isdigit() and alive(int(text)):
            return int(text)
        time.sleep(0.05)
    raise AssertionError("no process holds the delivery lock")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.05)
    assert predicate(), "timed out"  # type: ignore[operator]


def test_a_child_delivers_reports_metrics_and_is_restarted_after_a_crash(tmp_path: Path) -> None:
    upstream = free_port()
    with sink_on(upstream) as sink:
        relay = start_relay(tmp_path, config(upstream))
        try:
            send(relay, "one")
            wait_until(lambda: tags_of(sink) == {"one"})
            child = deliverer(tmp_path)
            assert child != relay.proc.pid
            assert admin_get(f"{relay.admin_url}/metrics")[0] == 200
            wait_until(lambda: 'relay_deliveries_total{outcome="delivered"} 1.0' in metrics(relay))
            assert "relay_upstream_latency_seconds_count 1.0" in metrics(relay)
            os.kill(child, signal.SIGKILL)
            send(relay, "two")  # accepted while no child runs; delivered by the next one
            wait_until(lambda: tags_of(sink) == {"one", "two"})
            assert deliverer(tmp_path) not in (child, relay.proc.pid)
        finally:
            code, err = stop_relay(relay)
        assert code == 0, err
        assert "delivery process exited" in err
        assert len(sink.messages) == 2


def metrics(relay: RelayProcess) -> str:
    return admin_get(f"{relay.admin_url}/metrics")[1]


def test_the_child_of_a_killed_relay_stops_and_a_new_relay_delivers(tmp_path: Path) -> None:
    upstream = free_port()
    with sink_on(upstream) as sink:
        relay = start_relay(tmp_path, config(upstream))
        send(relay, "before")
        wait_until(lambda: tags_of(sink) == {"before"})
        child = deliverer(tmp_path)
        relay.proc.kill()
        relay.proc.communicate()
        wait_until(lambda: not alive(child))  # its stdin closed with the parent
        again = start_relay(tmp_path, config(upstream))
        try:
            send(again, "after")
            wait_until(lambda: tags_of(sink) == {"before", "after"})
        finally:
            stop_relay(again)
        assert len(sink.messages) == 2


def test_two_relays_on_one_store_deliver_each_copy_once(tmp_path: Path) -> None:
    upstream = free_port()
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    shared = config(upstream).replace('path = "relay.db"', f'path = "{tmp_path / "relay.db"}"')
    with sink_on(upstream) as sink:
        first = start_relay(tmp_path, shared)
        second = start_relay(second_dir, shared)
        try:
            holder = deliverer(tmp_path)
            send(first, "a1", "a2", "a3")
            send(second, "b1", "b2", "b3")
            wait_until(lambda: len(tags_of(sink)) == 6)
            time.sleep(1.5)  # a standby that delivered too would show here
            assert len(sink.messages) == 6
            stop_relay(first)  # the standby takes over
            send(second, "b4")
            wait_until(lambda: "b4" in tags_of(sink))
            assert deliverer(tmp_path) != holder
        finally:
            stop_relay(first)
            stop_relay(second)
        assert len(sink.messages) == 7


def test_delivery_in_the_smtp_process_when_asked(tmp_path: Path) -> None:
    upstream = free_port()
    toml = config(upstream).replace("[tracking]", "delivery_process = false\n[tracking]")
    with sink_on(upstream) as sink:
        relay = start_relay(tmp_path, toml)
        try:
            send(relay, "inline")
            wait_until(lambda: tags_of(sink) == {"inline"})
            assert deliverer(tmp_path) == relay.proc.pid
        finally:
            stop_relay(relay)
