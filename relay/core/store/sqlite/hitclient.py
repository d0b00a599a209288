"""HitWriter: the HTTP side of the event writer process (sqlite/ or postgres/hitproc.py).

``record_hit`` returns the stored events once they are committed, like
Store.record_hit, and never waits longer than ``timeout``: it raises
TimeoutError then (the hit may still be committed later, as with the
in-process writer). Hits of one event-loop turn go out in frames of at
most ``FRAME_HITS``, each as soon as it is full, and one timer per frame
bounds them all: a per-request ``asyncio.timeout`` costs more than the rest
of the recording path.

When the process is not running (not started, failed to start, or died)
hits go through the in-process store instead. Hits that were in flight
when it died are sent again through the store: the process may have
committed them just before dying, so such a hit can be stored twice, but
an answered hit is never lost. The process is restarted after a delay
that doubles (up to a minute) while it keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from relay.core.models import Event, event_from
from relay.core.store.base import StoreUnavailable
from relay.core.store.sqlite.hitproc import HEADER, MAX_FRAME, Request, encode_frame, event_fields

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 30.0
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0
MAX_PENDING = 20_000  # hits in flight; beyond this the store is overwhelmed: refuse, not queue
# One frame per loop turn kept 50 busy connections in lockstep: this process read
# and handled all 50 while the writer waited, then idled while it inserted and
# committed them (measured: this process 74% busy). Sending every 16 hits, the
# writer inserts the first ones while the rest are handled, and commits sooner.
FRAME_HITS = 16
PACKAGE_ROOT = Path(__file__).resolve().parents[4]
# The child imports this same ``relay`` package, installed or run from a checkout, and
# runs the ``main`` of the engine's event writer module (``child``).
CHILD_MAIN = (
    "import sys, importlib; sys.path.insert(0, sys.argv[1]); "
    "sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))"
)
SQLITE_CHILD = "relay.core.store.sqlite.hitproc"


class HitStore(Protocol):
    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]: ...


@dataclass
class _Link:
    """One running writer process and its socket."""

    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None] | None = field(default=None)


@dataclass
class _Pending:
    future: asyncio.Future[list[Event]]
    event: Event
    relabel_client: bool


class HitWriter:
    """Records hits through a writer process on ``path``, or through ``fallback``.

    ``child`` is the writer process's module (its ``main(argv)``): SQLite's by
    default; PostgreSQL's (store/postgres/hitproc.py) speaks the same frames.
    The process gets ``path`` (a file, or a URL that may hold a password) as its
    first frame on the socket, never on its command line."""

    def __init__(
        self,
        fallback: HitStore,
        path: str | None = None,
        timeout: float = 1.0,
        restart_delay: float = RESTART_DELAY,
        frame_hits: int = FRAME_HITS,
        child: str = SQLITE_CHILD,
    ) -> None:
        self._fallback = fallback
        self._child = child
        self.frame_hits = frame_hits
        self._path = path
        self.timeout = timeout
        self._restart_delay = restart_delay
        self._delay = restart_delay
        self._link: _Link | None = None
        self._pending: dict[int, _Pending] = {}
        self._out: list[Request] = []
        self._last_id = 0
        self._closing = False
        self._restarting: asyncio.Task[None] | None = None
        self._resubmits: set[asyncio.Task[None]] = set()
        self.restarts = 0  # processes started after the first (tests, logs)
        self.frames = 0  # frames sent to the process (tests)

    @property
    def pid(self) -> int | None:
        """The writer process's pid while it runs; None when hits go through the store."""
        return None if self._link is None else self._link.process.pid

    async def start(self) -> None:
        """Start the process; if it cannot start, hits use the store and it is retried later."""
        if self._path is not None and not self._closing:
            await self._spawn_or_retry()

    async def close(self) -> None:
        """Let the process commit and acknowledge what it has, then wait for it to end."""
        self._closing = True
        if self._restarting is not None:
            self._restarting.cancel()
        if self._link is not None:
            await self._shutdown(self._link)
        while self._resubmits:
            await asyncio.gather(*self._resubmits, return_exceptions=True)

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        link = self._link
        if link is None:
            async with asyncio.timeout(self.timeout):
                return await self._fallback.record_hit(event, relabel_client)
        if len(self._pending) >= MAX_PENDING:
            raise StoreUnavailable(f"{MAX_PENDING} hits already wait for the event writer")
        future: asyncio.Future[list[Event]] = link.loop.create_future()
        self._last_id += 1
        self._pending[self._last_id] = _Pending(future, event, relabel_client)
        self._out.append((self._last_id, event_fields(event), relabel_client))
        if len(self._out) == 1:
            link.loop.call_soon(self._flush)
        elif len(self._out) >= self.frame_hits:
            self._flush()
        return await future

    # --- the process --------------------------------------------------------------
    async def _spawn_or_retry(self) -> None:
        try:
            await self._spawn()
        except Exception as exc:
            log.error("event writer process did not start (%s); events go through the store", exc)
            self._schedule_restart()
        else:
            self._delay = self._restart_delay
            if self._closing and self._link is not None:  # close() came while it started
                await self._shutdown(self._link)

    async def _shutdown(self, link: _Link) -> None:
        self._flush()
        with contextlib.suppress(OSError):
            link.writer.write_eof()  # the process ends after its last batch
        if link.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(link.task), STOP_TIMEOUT)
        await _reap(link.process)

    async def _spawn(self) -> None:
        assert self._path is not None
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                CHILD_MAIN,
                str(PACKAGE_ROOT),
                self._child,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        writer.write(encode_frame(self._path))
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                hello = await _read_frame(reader)
            if not (isinstance(hello, tuple) and hello[:1] == ("ready",)):
                raise StoreUnavailable(f"unexpected greeting {hello!r}")
        except BaseException:
            writer.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await _reap(process)
            raise
        link = _Link(process, reader, writer, asyncio.get_running_loop())
        link.task = asyncio.create_task(self._receive(link), name="event-writer-acks")
        self._link = link
        log.info("event writer process %d started", process.pid)

    def _flush(self) -> None:
        """One frame for the hits not sent yet, and one timer bounding them all.

        The timer comes first: record_hit calls this for a full frame, and
        should the frame fail to go out, every wait in it still ends in time.
        """
        batch, self._out = self._out, []
        link = self._link
        if not batch or link is None:  # died meanwhile: _lost resubmits everything pending
            return
        link.loop.call_later(self.timeout, self._expire, [request[0] for request in batch])
        link.writer.write(encode_frame(batch))
        self.frames += 1

    def _expire(self, request_ids: list[int]) -> None:
        """Stop the wait, not the write: an acknowledgement may still come, or a resubmission."""
        for request_id in request_ids:
            pending = self._pending.get(request_id)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(TimeoutError())

    async def _receive(self, link: _Link) -> None:
        try:
            while True:
                for request_id, ok, value in await _read_frame(link.reader):
                    pending = self._pending.pop(request_id, None)
                    if pending is None or pending.future.done():
                        continue
                    if ok:
                        stored = value if type(value) is list else [_with_id(pending.event, value)]
                        pending.future.set_result(stored)
                    else:
                        pending.future.set_exception(value)
        except (asyncio.IncompleteReadError, OSError, ValueError) as exc:
            if not self._closing or self._pending:
                log.error("event writer process %d stopped: %r", link.process.pid, exc)
        finally:
            self._lost(link)

    def _lost(self, link: _Link) -> None:
        """Back to the store: every hit still in flight is sent again through it."""
        if self._link is link:
            self._link = None
        link.writer.close()
        self._out = []
        pending, self._pending = self._pending, {}
        if pending:
            log.warning("%d hits in flight go through the store instead", len(pending))
        for item in pending.values():
            task = asyncio.create_task(self._resubmit(item))
            self._resubmits.add(task)
            task.add_done_callback(self._resubmits.discard)
        if not self._closing:
            self._schedule_restart()

    async def _resubmit(self, item: _Pending) -> None:
        try:
            events = await self._fallback.record_hit(item.event, item.relabel_client)
        except Exception as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            else:
                log.error("a hit answered before the event writer died was not stored: %r", exc)
            return
        if not item.future.done():
            item.future.set_result(events)

    def _schedule_restart(self) -> None:
        if self._closing or (self._restarting is not None and not self._restarting.done()):
            return
        self._restarting = asyncio.create_task(self._restart(), name="event-writer-restart")

    async def _restart(self) -> None:
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, MAX_RESTART_DELAY)
        self.restarts += 1
        self._restarting = None
        await self._spawn_or_retry()


def _with_id(event: Event, event_id: int) -> Event:
    """The hit as stored, from an ack that carries only its id (hitproc.acknowledgement).

    A fresh copy: the caller's event stays as it was. Built without
    dataclasses.replace, which re-runs __init__ (several times the cost).
    """
    return event_from(vars(event), id=event_id)


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes")
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 (our own child process)


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for the process to end; kill it if it does not."""
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
