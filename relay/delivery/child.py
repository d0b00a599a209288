"""Delivery in a process of its own, started and supervised by the SMTP role.

Rewriting each copy and speaking SMTP to the upstream is most of the relay's
CPU; on the SMTP front's event loop it also stretches every client's
round trip. In a child process it has a core (and a GIL) to itself, and the
front only spools. The two talk over the child's stdin and stdout:

- parent -> child: one byte per spooled message (wake up now); EOF means stop:
  the child finishes the copies in flight and exits. A parent killed with -9
  closes the pipe too, so an orphan never goes on delivering.
- child -> parent: "ready", then one line per delivery metric (`d OUTCOME`,
  `l SECONDS`, `b`), which the parent adds to its own /metrics.

``upstream.delivery_workers`` children share the queue by leases
(store/sql/leases.py): DeliveryPool starts them and wakes them in turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from relay.core.metrics import DeliveryMetrics
from relay.core.tasks import cancel_and_wait

log = logging.getLogger("relay.delivery.child")

READY = b"ready\n"
START_TIMEOUT = 60.0
RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
WAKE_BACKLOG = 64  # unread wake bytes beyond this add nothing: the child is awake


class DeliveryProcessError(Exception):
    """The delivery process could not be started."""


class DeliveryProcess:
    """The parent's side: spawn, wake, relay metrics, restart after a crash, stop."""

    def __init__(self, command: Sequence[str], metrics: DeliveryMetrics | None) -> None:
        self._command = list(command)
        self._metrics = metrics
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.restarts = 0

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._supervise(), name="delivery-process")

    def wake(self) -> None:
        stdin = self._proc.stdin if self._proc is not None else None
        if stdin is None or stdin.is_closing():
            return
        if stdin.transport.get_write_buffer_size() < WAKE_BACKLOG:
            stdin.write(b"w")

    async def stop(self, grace: float) -> None:
        """EOF on its stdin: the child drains and exits; killed if it overstays grace."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                log.warning("delivery process still busy after %.0fs: killing it", grace)
                proc.kill()
                await proc.wait()
        await cancel_and_wait(self._task)

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line != READY:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            code = await proc.wait()
            raise DeliveryProcessError(f"the delivery process did not start (exit code {code})")
        self._proc = proc

    async def restart(self, grace: float) -> None:
        """SIGHUP: drain and stop the child, start a new one (it reads the config file
        again). One that does not start is retried as after a crash."""
        await self.stop(grace)
        self._stopping = False
        self._proc = None
        try:
            await self._spawn()
        except (DeliveryProcessError, OSError) as exc:
            log.error("%s; retrying", exc)
        self._task = asyncio.create_task(self._supervise(), name="delivery-process")

    async def _supervise(self) -> None:
        failures = 0
        while True:
            proc = self._proc
            if proc is not None:
                assert proc.stdout is not None
                await self._relay_metrics(proc.stdout)
                code = await proc.wait()
                if self._stopping:
                    return
                log.error("delivery process exited (code %s)", code)
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)]
            log.error("delivery process: starting again in %.0fs", delay)
            await asyncio.sleep(delay)
            try:
                await self._spawn()
                self.restarts += 1
                failures = 0
            except (DeliveryProcessError, OSError) as exc:
                log.error("%s", exc)
                failures += 1

    async def _relay_metrics(self, stdout: asyncio.StreamReader) -> None:
        while line := await stdout.readline():
            kind, _, value = line.decode("ascii", "replace").strip().partition(" ")
            metrics = self._metrics
            if metrics is None:
                continue
            if kind == "d":
                metrics.delivery(value)
            elif kind == "l":
                with contextlib.suppress(ValueError):
                    metrics.upstream_attempt(float(value))
            elif kind == "b":
                metrics.bounce_sent()


class DeliveryPool:
    """``upstream.delivery_workers`` delivery processes, each supervised like one."""

    def __init__(
        self, command: Sequence[str], metrics: DeliveryMetrics | None, workers: int = 1
    ) -> None:
        self.processes = [DeliveryProcess(command, metrics) for _ in range(max(1, workers))]
        self._next = 0

    @property
    def restarts(self) -> int:
        return sum(p.restarts for p in self.processes)

    async def start(self) -> None:
        """All or none: one that does not start stops the others and raises."""
        try:
            await asyncio.gather(*(p.start() for p in self.processes))
        except BaseException:
            await self.stop(grace=5.0)
            raise

    def wake(self) -> None:
        """One spool wakes one worker (in turn): it claims what is due; the others poll."""
        self._next = (self._next + 1) % len(self.processes)
        self.processes[self._next].wake()

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(p.stop(grace) for p in self.processes))

    async def restart(self, grace: float) -> None:
        """One at a time, so the others go on delivering meanwhile."""
        for process in self.processes:
            await process.restart(grace)


class PipeMetrics:
    """The child's DeliveryMetrics: each one a line to the parent."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def delivery(self, outcome: str) -> None:
        self._write(f"d {outcome}\n".encode())

    def upstream_attempt(self, seconds: float) -> None:
        self._write(f"l {seconds:.6f}\n".encode())

    def bounce_sent(self) -> None:
        self._write(b"b\n")


async def serve_parent(
    run: Callable[[DeliveryMetrics, asyncio.Event], Coroutine[Any, Any, None]],
) -> None:
    """The child's side: wake bytes in, metrics out, stop at EOF.

    run(metrics, wake) delivers until cancelled; wake is set for each byte read.
    An error in run ends the child with it, and the parent starts a new one.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    wake = asyncio.Event()
    metrics = PipeMetrics(lambda data: None if transport.is_closing() else transport.write(data))
    delivering: asyncio.Task[None] = asyncio.create_task(run(metrics, wake), name="delivery")
    transport.write(READY)
    reading = asyncio.ensure_future(reader.read(4096))
    try:
        while True:
            await asyncio.wait({reading, delivering}, return_when=asyncio.FIRST_COMPLETED)
            if delivering.done() or not reading.result():
                break
            wake.set()
            reading = asyncio.ensure_future(reader.read(4096))
    finally:
        reading.cancel()
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering  # re-raises what ended it, if not the cancel
        transport.close()
