"""New events of every node, pushed: LISTEN on the channel the events trigger NOTIFYs.

A statement that inserts events notifies EVENTS_CHANNEL (schema.py); PostgreSQL
delivers the notification when that transaction commits, to every session that
listens, on any host. One connection per process listens, in a thread of its
own (psycopg's notifies() blocks), and wakes the event loop's waiters; the
notification carries nothing: the live feed reads the events from the store.
A lost connection is opened again; meanwhile waiters fall back to their timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger("relay.store")

EVENTS_CHANNEL = "relay_events"
RECONNECT_SECONDS = 1.0
STOP_CHECK_SECONDS = 0.5  # how soon the thread sees close()


class EventListener:
    """``await listener.wait(at_most)``: until a NOTIFY arrives or at_most seconds pass."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self._connect = connect
        self._news = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def wait(self, at_most: float) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._listen, name="store-listen", daemon=True)
            self._thread.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._news.wait()
        self._news.clear()

    async def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, RECONNECT_SECONDS + STOP_CHECK_SECONDS * 2)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self._wake()  # anything committed while not listening: read it now
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=STOP_CHECK_SECONDS):
                            self._wake()
            except psycopg.Error as exc:
                if not self._stopping.is_set():
                    log.warning("live events: listening failed (%s); again in 1 s", exc)
                    self._stopping.wait(RECONNECT_SECONDS)

    def _wake(self) -> None:
        """Wake the waiters, once until they wait again: a busy pixel server commits
        hundreds of times a second, and each call into the event loop from this thread
        costs the loop a wake-up (a waiter already woken reads every event anyway).
        Reading the flag from here races only towards one wake-up too many."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self._news.is_set():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._news.set)
