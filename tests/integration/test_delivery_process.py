"""The delivery processes of `relay serve`: metrics, restart after a crash, several sharing
one store by leases."""

from __future__ import annotations

import os
import signal
import smtplib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from integration.test_queue_operations import admin_get, config, message, sink_on, tags_of
from support.processes import RelayProcess, SinkHandler, free_port, start_relay, stop_relay


def send(relay: RelayProcess, *tags: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=10) as client:
        for tag in tags:
            client.sendmail("a@example.com", ["b@example.net"], message(tag))


def deliverers(workdir: Path) -> set[int]:
    """The live processes holding a deliverer lease ("deliverer/<host>/<pid>/<nonce>")."""
    with sqlite3.connect(workdir / "relay.db") as db:
        rows = db.execute(
            "SELECT name FROM leases WHERE name LIKE 'deliverer/%' AND until > ?", (time.time(),)
        ).fetchall()
    db.close()
    pids = {int(name.split("/")[2]) for (name,) in rows}
    return {pid for pid in pids if alive(pid)}


def deliverer(workdir: Path) -> int:
    """The one live process that delivers from the store."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = deliverers(workdir)
        if len(found) == 1:
            return found.pop()
        time.sleep(0.05)
    raise AssertionError(f"not one delivering process: {deliverers(workdir)}")


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


def delivered_by(relay: RelayProcess, sink: SinkHandler, workdir: Path, tag: str) -> int:
    """Sends the one message `tag` through relay and waits for the sink, the first it gets;
    the process that delivered it."""
    send(relay, tag)
    wait_until(lambda: tags_of(sink) == {tag})
    return deliverer(workdir)


def config_with(upstream: int, setting: str) -> str:
    """The relay's config for the sink on `upstream` with one more line (before [tracking])."""
    return config(upstream).replace("[tracking]", f"{setting}\n[tracking]")


@contextmanager
def serving(workdir: Path, setting: str = "") -> Iterator[tuple[RelayProcess, SinkHandler]]:
    """A relay in workdir (config_with `setting`) delivering to a sink of its own; the test
    stops the relay, the sink stops after it."""
    upstream = free_port()
    with sink_on(upstream) as sink:
        yield start_relay(workdir, config_with(upstream, setting)), sink


def test_a_child_delivers_reports_metrics_and_is_restarted_after_a_crash(tmp_path: Path) -> None:
    with serving(tmp_path) as (relay, sink):
        try:
            child = delivered_by(relay, sink, tmp_path, "one")
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
        child = delivered_by(relay, sink, tmp_path, "before")
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


def test_two_relays_on_one_store_both_deliver_each_copy_once(tmp_path: Path) -> None:
    upstream = free_port()
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    shared = config(upstream).replace('path = "relay.db"', f'path = "{tmp_path / "relay.db"}"')
    with sink_on(upstream) as sink:
        first = start_relay(tmp_path, shared)
        second = start_relay(second_dir, shared)
        try:
            wait_until(lambda: len(deliverers(tmp_path)) == 2)  # no standby: both deliver
            for i in range(10):
                send(first, f"a{i}")
                send(second, f"b{i}")
            wait_until(lambda: len(tags_of(sink)) == 20)
            time.sleep(1.5)  # a copy sent twice would show here
            assert len(sink.messages) == 20
            stop_relay(first)
            send(second, "b-last")
            wait_until(lambda: "b-last" in tags_of(sink))
        finally:
            stop_relay(first)
            stop_relay(second)
        assert len(sink.messages) == 21


def test_several_delivery_processes_share_the_queue(tmp_path: Path) -> None:
    with serving(tmp_path, "delivery_workers = 3") as (relay, sink):
        try:
            wait_until(lambda: len(deliverers(tmp_path)) == 3)
            assert relay.proc.pid not in deliverers(tmp_path)
            tags = [f"m{i}" for i in range(30)]
            send(relay, *tags)
            wait_until(lambda: tags_of(sink) == set(tags))
            time.sleep(1.0)
            assert len(sink.messages) == 30  # each once
            assert "relay_delivery_workers 3.0" in metrics(relay)
        finally:
            code, err = stop_relay(relay)
        assert code == 0, err


def test_delivery_in_the_smtp_process_when_asked(tmp_path: Path) -> None:
    with serving(tmp_path, "delivery_process = false") as (relay, sink):
        try:
            assert delivered_by(relay, sink, tmp_path, "inline") == relay.proc.pid
        finally:
            stop_relay(relay)


def test_the_child_ignores_a_group_sigterm_and_stops_with_its_parent(tmp_path: Path) -> None:
    """`systemctl stop` and Ctrl-C signal every process of the group: the child must not
    die mid-send, it stops when the relay closes its pipe, after its copies in flight."""
    with serving(tmp_path) as (relay, sink):
        try:
            child = delivered_by(relay, sink, tmp_path, "one")
            os.kill(child, signal.SIGTERM)
            send(relay, "two")
            wait_until(lambda: tags_of(sink) == {"one", "two"})
            assert deliverer(tmp_path) == child  # the same process delivered it
        finally:
            code, err = stop_relay(relay)
        assert code == 0, err
        wait_until(lambda: not alive(child))
        assert "delivery process exited" not in err
