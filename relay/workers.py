"""More processes on the SMTP and tracking listeners: workers the main process supervises.

``smtp.workers = N`` and ``tracking.workers = N`` put N processes on each address
of that listener: the main process serves it itself and starts N - 1 workers
(``relay smtp --worker``, ``relay http --worker``, the same config file). Every
one binds with SO_REUSEPORT, so the kernel spreads new connections over all N
(by a hash of the client's address and port), and a worker that dies leaves
the others answering. Each worker opens the store itself (SQLite in WAL mode
with a busy timeout, or PostgreSQL, are safe for several processes) and, on
the tracking side, builds its own classifier; the admin listener, the live
feed, webhooks and the retention purge stay in the main process.

The pipes, as with the delivery process (relay/delivery/child.py):

- main -> worker, its stdin: EOF means stop: the worker stops accepting,
  finishes the sessions and requests in flight and exits. A main process
  killed with -9 closes the pipe too, so a worker never outlives its relay.
- worker -> main, its stdout: ``ready`` once it listens, or ``error LINE``
  when it cannot start (the main process's start then fails with that line);
  then one ``w`` per message an SMTP worker spooled, which wakes delivery.
  A wake that is lost (a full pipe, a delivery process elsewhere) costs at
  most the delivery's poll interval (1 s).

Workers ignore SIGINT and SIGTERM, which a Ctrl-C or ``systemctl stop`` sends
to every process of the group: the main process stops them, through the
pipe, once it stops itself. It forwards SIGHUP: each worker reads the config
file again. A worker that exits is started again after a delay that grows
while it keeps failing (RESTART_DELAYS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from relay.core.config import Config, HostPort

log = logging.getLogger("relay.workers")

# `relay ROLE --worker`, and the config section that counts its processes.
ROLES = {"smtp": "smtp", "http": "tracking"}

READY = b"ready\n"
FAILED = b"error "
WAKE = b"w"
START_TIMEOUT = 60.0
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STEADY = 30.0  # a worker that ran this long before exiting starts again at the first delay
Process = asyncio.subprocess.Process


class WorkerError(Exception):
    """A worker could not be started; the message is one line for the operator."""


def extra_workers(config: Config, *, smtp: bool, http: bool) -> dict[str, int]:
    """The workers a relay with these roles starts, by role (smtp.workers and
    tracking.workers count the relay's own process too)."""
    wanted = {"smtp": config.smtp.workers if smtp else 1}
    wanted["http"] = config.tracking.workers if http else 1
    return {role: count - 1 for role, count in wanted.items() if count > 1}


class WorkerPool:
    """The main process's side: N workers of one role, started, woken, restarted, stopped."""

    def __init__(
        self,
        role: str,
        command: Sequence[str],
        count: int,
        *,
        on_wake: Callable[[], None] | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self.role = ROLES.get(role, role)  # "smtp" or "tracking", for messages
        self._command = list(command)
        self._on_wake = on_wake
        self.on_exit = on_exit
        self._procs: list[Process | None] = [None] * count
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.restarts = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    async def start(self) -> None:
        """All or none: the first worker that cannot start stops the others and raises
        WorkerError with its line."""
        results = await asyncio.gather(
            *(self._spawn() for _ in self._procs), return_exceptions=True
        )
        started = [r for r in results if isinstance(r, Process)]
        failed = [r for r in results if not isinstance(r, Process)]
        if failed:
            await asyncio.gather(*(_end(p, grace=5.0) for p in started))
            if isinstance(failed[0], WorkerError | OSError):
                raise WorkerError(str(failed[0]))
            raise failed[0]
        self._procs = list(started)
        self._tasks = [
            asyncio.create_task(self._supervise(i), name=f"{self.role}-worker-{i}")
            for i in range(len(self._procs))
        ]
        log.info("%s: %d more processes listen: %s", self.role, len(self.pids), self.pids)

    def hangup(self) -> None:
        """SIGHUP to every worker: each reads the config file again."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    async def stop(self, grace: float) -> None:
        """EOF to every worker: they drain and exit; one that overstays grace is killed."""
        self._stopping = True
        await asyncio.gather(*(_end(p, grace) for p in self._procs if p is not None))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _spawn(self) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            except TimeoutError:
                line = b""
        except BaseException:
            await _end(proc, grace=0)
            raise
        if line == READY:
            return proc
        code = await _end(proc, grace=5.0)
        if line.startswith(FAILED):
            raise WorkerError(line[len(FAILED) :].decode("utf-8", "replace").strip())
        raise WorkerError(f"a {self.role} worker did not start (exit code {code})")

    async def _supervise(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            proc = self._procs[index]
            if proc is not None:
                began = loop.time()
                assert proc.stdout is not None
                await self._relay(proc.stdout)
                code = await proc.wait()
                if self.on_exit is not None:
                    self.on_exit(proc.pid)
                if self._stopping:
                    return
                self._procs[index] = None
                if loop.time() - began >= STEADY:
                    failures = 0
                log.error("%s worker %d exited (%s)", self.role, proc.pid, _exit_status(code))
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            log.error("%s worker: starting one again in %gs", self.role, delay)
            await asyncio.sleep(delay)
            try:
                self._procs[index] = await self._spawn()
            except (WorkerError, OSError) as exc:
                log.error("%s worker: %s", self.role, exc)
                failures += 1
                continue
            self.restarts += 1
            failures += 1  # reset only once it has run for STEADY seconds
            log.info("%s worker %d started", self.role, self._procs[index].pid)  # type: ignore[union-attr]

    async def _relay(self, stdout: asyncio.StreamReader) -> None:
        """Until the worker closes its stdout (it exits): each chunk with a wake wakes once."""
        while data := await stdout.read(4096):
            if self._on_wake is not None and WAKE in data:
                self._on_wake()


async def _end(proc: Process, grace: float) -> int:
    """Close the worker's stdin (stop), wait up to grace, then kill; its exit code."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            if grace > 0:
                log.warning("worker %d still busy after %gs: killing it", proc.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode


def _exit_status(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class ParentLink:
    """A worker's side of the pipes: ready or error, wakes, and the stop (EOF on stdin)."""

    def __init__(self) -> None:
        self._out = sys.stdout.fileno()
        self._stopped: asyncio.Future[None] | None = None
        # A Ctrl-C or a stop of the service group must not stop a worker mid-request:
        # its relay stops it through the pipe, after it stopped itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def failed(self, message: str) -> None:
        """The one line the relay prints for a worker that could not start."""
        line = " ".join(message.split())
        with contextlib.suppress(OSError):
            os.write(self._out, FAILED + line.encode("utf-8", "replace") + b"\n")

    async def ready(self) -> None:
        """Listening: tell the relay, and from now watch stdin for its EOF."""
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        stopped = self._stopped

        class EndOfInput(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                if not stopped.done():
                    stopped.set_result(None)

        await loop.connect_read_pipe(EndOfInput, sys.stdin)
        try:
            os.write(self._out, READY)
        except BrokenPipeError:  # the relay is gone already: stop (its EOF comes too)
            if not stopped.done():
                stopped.set_result(None)
        os.set_blocking(self._out, False)  # a wake never blocks the worker's loop

    def wake(self) -> None:
        """A message was spooled: one byte; dropped when the pipe is full (the relay is awake)."""
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._out, WAKE)

    async def stopped(self) -> None:
        assert self._stopped is not None, "ready() first"
        await self._stopped


def check_ports_free(addresses: Sequence[HostPort], key: str) -> None:
    """WorkerError naming key when something already listens on one of addresses.

    Listeners shared with SO_REUSEPORT would otherwise join another relay's (of the
    same user) on the same port without a word: this plain bind fails first, as
    every listener's does without SO_REUSEPORT."""
    for address in addresses:
        try:
            _probe(address.host, address.port)
        except OSError as exc:
            why = exc.strerror or exc
            raise WorkerError(f"{key}: cannot listen on {address}: {why}") from exc


def _probe(host: str, port: int) -> None:
    if port == 0:
        return
    infos: list[Any] = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
