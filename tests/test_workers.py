"""WorkerPool against small stand-in workers (python -c), and the port check.

The real workers (`relay smtp --worker`, `relay http --worker`) are tested in
tests/integration/test_workers.py; here each behaviour of the supervision is
driven by a script that does exactly one thing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from relay.core.config import Config, HostPort, SmtpConfig, TrackingConfig
from relay.workers import WorkerError, WorkerPool, check_ports_free, extra_workers

SERVES = "import sys; print('ready', flush=True); sys.stdin.read()"


def script(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


async def wait_until(predicate: object) -> None:
    assert callable(predicate)
    async with asyncio.timeout(10):
        while not predicate():  # noqa: ASYNC110 - processes are polled
            await asyncio.sleep(0.02)


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_starts_every_worker_and_stops_them_through_their_stdin() -> None:
    pool = WorkerPool("http", script(SERVES), 3)
    await pool.start()
    pids = pool.pids
    assert len(set(pids)) == 3 and all(running(pid) for pid in pids)
    assert pool.role == "tracking"
    await pool.stop(grace=10)
    assert not any(running(pid) for pid in pids)


async def test_a_worker_that_cannot_start_fails_the_start_with_its_line() -> None:
    failing = (
        "import sys; print('error tracking.listen: cannot listen on 127.0.0.1:1: "
        "Permission denied', flush=True); sys.exit(2)"
    )
    pool = WorkerPool("http", script(failing), 2)
    with pytest.raises(WorkerError) as caught:
        await pool.start()
    assert str(caught.value) == "tracking.listen: cannot listen on 127.0.0.1:1: Permission denied"


async def test_a_worker_that_says_nothing_fails_the_start_with_its_exit_code() -> None:
    pool = WorkerPool("smtp", script("import sys; sys.exit(3)"), 1)
    with pytest.raises(WorkerError, match=r"^a smtp worker did not start \(exit code 3\)$"):
        await pool.start()


async def test_when_one_fails_the_others_are_stopped(tmp_path: Path) -> None:
    """Each stand-in writes its pid; the first to create the marker fails, the others
    serve until the pool stops them."""
    marker = tmp_path / "failed"
    code = (
        "import os, sys\n"
        f"open({str(tmp_path / 'pids')!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "try:\n"
        f"    fd = os.open({str(marker)!r}, os.O_CREAT | os.O_EXCL)\n"
        "except FileExistsError:\n"
        "    print('ready', flush=True); sys.stdin.read()\n"
        "else:\n"
        "    print('error boom', flush=True)\n"
    )
    pool = WorkerPool("http", script(code), 3)
    with pytest.raises(WorkerError, match=r"^boom$"):
        await pool.start()
    pids = [int(line) for line in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 3
    await wait_until(lambda: not any(running(pid) for pid in pids))


async def test_a_dead_worker_is_started_again_and_reported() -> None:
    gone: list[int] = []
    pool = WorkerPool("http", script(SERVES), 2, on_exit=gone.append)
    await pool.start()
    try:
        victim = pool.pids[0]
        os.kill(victim, signal.SIGKILL)
        await wait_until(lambda: len(pool.pids) == 2 and victim not in pool.pids)
        assert gone == [victim]
        assert pool.restarts == 1
    finally:
        await pool.stop(grace=10)


async def test_wakes_from_a_worker_reach_the_callback() -> None:
    woken = asyncio.Event()
    code = "import sys; print('ready', flush=True); print('w', flush=True); sys.stdin.read()"
    pool = WorkerPool("smtp", script(code), 1, on_wake=woken.set)
    await pool.start()
    try:
        async with asyncio.timeout(10):
            await woken.wait()
    finally:
        await pool.stop(grace=10)


async def test_hangup_reaches_every_worker(tmp_path: Path) -> None:
    log = tmp_path / "hups"
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], 'a').write('hup\\n'))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    pool = WorkerPool("http", script(code, str(log)), 2)
    await pool.start()
    try:
        pool.hangup()
        await wait_until(lambda: log.exists() and log.read_text().count("hup") == 2)
    finally:
        await pool.stop(grace=10)


async def test_a_worker_that_overstays_the_grace_is_killed() -> None:
    stubborn = "import sys, time; print('ready', flush=True); sys.stdin.read(); time.sleep(60)"
    pool = WorkerPool("smtp", script(stubborn), 1)
    await pool.start()
    [pid] = pool.pids
    started = time.monotonic()
    await pool.stop(grace=0.5)
    assert time.monotonic() - started < 10
    assert not running(pid)


def test_extra_workers_count_the_relay_itself() -> None:
    config = Config(smtp=SmtpConfig(workers=2), tracking=TrackingConfig(workers=4))
    assert extra_workers(config, smtp=True, http=True) == {"smtp": 1, "http": 3}
    assert extra_workers(config, smtp=False, http=True) == {"http": 3}
    assert extra_workers(config, smtp=True, http=False) == {"smtp": 1}
    assert extra_workers(Config(), smtp=True, http=True) == {}


def test_a_port_someone_listens_on_is_refused_by_key() -> None:
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(
            WorkerError, match=rf"^smtp\.listen: cannot listen on 127\.0\.0\.1:{port}: "
        ):
            check_ports_free([HostPort("127.0.0.1", port)], "smtp.listen")
    check_ports_free([HostPort("127.0.0.1", port)], "smtp.listen")  # free again
