"""The messages whose copies are being delivered, read from the store once per message.

A message's copies are due together, and every read is a hop to the store's
thread that costs the event loop more than the read itself. The first copy
reads the message and its bytes; the others, even those started in the same
instant, share that read. Entries live a few seconds and the cache holds a
bounded number of bytes; the store stays the truth (a message is never changed
after it is spooled, only deleted with its copies).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from relay.core.models import Message
from relay.core.store import Store

MAX_BYTES = 32 * 1024 * 1024
TTL_SECONDS = 10.0

Loaded = tuple[Message, bytes] | None


@dataclass
class _Entry:
    task: asyncio.Task[Loaded]
    size: int
    expires: float


class RecentMessages:
    def __init__(self, store: Store, max_bytes: int = MAX_BYTES, ttl: float = TTL_SECONDS) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._ttl = ttl
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def prefetch(self, message_id: str) -> None:
        """Start reading a message that copies just claimed will need: the read then
        overlaps the copies before them instead of holding an upstream connection idle.
        A read that fails here is made again by ``get``."""
        self._entry(message_id, time.monotonic())

    async def get(self, message_id: str) -> Loaded:
        """(message, raw bytes), or None when the message is not in the spool."""
        entry = self._entry(message_id, time.monotonic())
        try:
            loaded = await asyncio.shield(entry.task)
        except BaseException:
            self._drop(message_id, entry)  # a failed read is not remembered
            raise
        if loaded is None:
            self._drop(message_id, entry)
        elif entry.size == 0 and self._entries.get(message_id) is entry:
            entry.size = len(loaded[1]) or 1
            self._bytes += entry.size
            self._shrink()
        return loaded

    def _entry(self, message_id: str, now: float) -> _Entry:
        """The message's entry, its read started if there is none (or the last failed)."""
        self._expire(now)
        entry = self._entries.get(message_id)
        if entry is not None and entry.task.done() and not _succeeded(entry.task):
            self._drop(message_id, entry)
            entry = None
        if entry is None:
            task = asyncio.ensure_future(self._load(message_id))
            task.add_done_callback(_succeeded)  # a failure nobody awaits is not an error
            entry = self._entries[message_id] = _Entry(task, 0, now + self._ttl)
        return entry

    async def _load(self, message_id: str) -> Loaded:
        return await self._store.load_message(message_id)  # one read, one hop

    def _expire(self, now: float) -> None:
        while self._entries:
            message_id, entry = next(iter(self._entries.items()))
            if entry.expires > now:
                return
            self._drop(message_id, entry)

    def _shrink(self) -> None:
        while self._bytes > self._max_bytes and len(self._entries) > 1:
            message_id, entry = next(iter(self._entries.items()))
            self._drop(message_id, entry)

    def _drop(self, message_id: str, entry: _Entry) -> None:
        if self._entries.get(message_id) is entry:
            del self._entries[message_id]
            self._bytes -= entry.size


def _succeeded(task: asyncio.Task[Loaded]) -> bool:
    """Whether a done read succeeded (asking retrieves its error, so none is logged as
    "never retrieved" when no copy came to await it)."""
    return not task.cancelled() and task.exception() is None
