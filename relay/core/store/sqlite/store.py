"""The SQLite backend: one file, WAL, one group-committing writer, a separate reader.

Writes go through GroupWriter (relay.core.store.sqlite.writer); reads run on their own
connection, so a report never waits behind a batch of events. A closed or
unreachable store raises StoreUnavailable, never a sqlite3 error.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from relay.core.models import (
    ClientOpen,
    ContactReport,
    Copy,
    CopyPart,
    CopySpec,
    DeliveryOutcome,
    Event,
    EventBucket,
    Message,
    MessageFilter,
    MessageReport,
    MessageSummary,
    NewMessage,
    PendingBounce,
    QueueEntry,
    TagReport,
    TagSummary,
    WebhookDelivery,
    WebhookRow,
    WebhookTarget,
)
from relay.core.store.base import StoreUnavailable
from relay.core.store.sql import (
    bodies,
    feed,
    history,
    labels,
    leases,
    outbox,
    privacy,
    queue,
    reads,
    reports,
    tags,
    writes,
)
from relay.core.store.sqlite import schema
from relay.core.store.sqlite.hitclient import HitWriter
from relay.core.store.sqlite.writer import Bulk, GroupWriter, run_in_thread

log = logging.getLogger("relay.store")

T = TypeVar("T")
MAX_PAGE = 1000
MAX_DUE = 10_000
MAX_BUCKETS = 1000
BUSY_TIMEOUT_MS = 5000
HIT_TIMEOUT = 1.0  # seconds a tracking hit may wait for its commit (Store.record_hit)
CONNECT_STOP_TIMEOUT = 5.0  # seconds to wait for the thread of a connection that failed


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


class SQLiteStore:
    """The Store protocol over one SQLite file (see relay.core.store.base)."""

    def __init__(
        self, path: str, events_process: bool = False, hit_timeout: float = HIT_TIMEOUT
    ) -> None:
        """events_process: tracking hits are committed by a process of their own
        (sqlite/hitproc.py), as ``relay http`` wants; otherwise by this process's writer."""
        self.path = path
        self._events_process = events_process
        self._hits = HitWriter(_InProcess(self), timeout=hit_timeout)
        self._writer: GroupWriter | None = None
        self._write_conn: aiosqlite.Connection | None = None
        self._read_conn: aiosqlite.Connection | None = None
        self._closed = False

    @property
    def events_pid(self) -> int | None:
        """The event writer process's pid while it runs (tests, logs)."""
        return self._hits.pid

    @property
    def transactions(self) -> int:
        """Write transactions committed so far (group commit makes this << writes)."""
        return 0 if self._writer is None else self._writer.transactions

    async def open(self) -> None:
        try:
            create_private(self.path)
            self._write_conn = await _connect(self.path)
            await run_in_thread(self._write_conn, schema.configure, BUSY_TIMEOUT_MS)
            await run_in_thread(self._write_conn, schema.migrate)
            await self._ensure_incremental_vacuum(self._write_conn)
            self._read_conn = await _connect(self.path)
            await run_in_thread(self._read_conn, schema.configure, BUSY_TIMEOUT_MS)
            await run_in_thread(self._read_conn, lambda c: c.execute("PRAGMA query_only=ON"))
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._writer = GroupWriter(self._write_conn)
        self._writer.start()
        if self._events_process:
            self._hits = HitWriter(_InProcess(self), self.path, self._hits.timeout)
            await self._hits.start()

    async def _ensure_incremental_vacuum(self, conn: aiosqlite.Connection) -> None:
        """A store made before schema step 7 is rewritten once (store/sql/bodies.py)."""
        mode = await run_in_thread(conn, lambda c: c.execute("PRAGMA auto_vacuum").fetchone())
        if int(mode[0]) == 2:
            return
        size = await run_in_thread(conn, bodies.file_bytes)
        log.warning(
            "%s: releasing delivered bodies and rewriting the file once for incremental"
            " auto-vacuum (%.0f MB; needs as much free space in the temporary directory)",
            self.path,
            size / 1e6,
        )
        started = time.monotonic()
        await run_in_thread(conn, bodies.ensure_incremental_vacuum)
        after = await run_in_thread(conn, bodies.file_bytes)
        took = time.monotonic() - started
        log.warning("%s: converted in %.1fs, now %.0f MB", self.path, took, after / 1e6)

    async def close(self) -> None:
        """Flush queued writes, then close both connections; a second call does nothing."""
        if self._closed:
            return
        await self._hits.close()  # its last hits may fall back to the writer below
        self._closed = True
        if self._writer is not None:
            await self._writer.close()
        for conn in (self._write_conn, self._read_conn):
            if conn is not None:
                await conn.close()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def secrets(self) -> list[str]:
        keys = await self._read(writes.read_secrets)
        return keys or await self._write(writes.ensure_secret)

    # --- spool and delivery -------------------------------------------------
    async def spool(self, msg: NewMessage, copies: Sequence[CopySpec]) -> str:
        message_id = writes.new_message_id(msg.received_at)
        return await self._write(lambda c: writes.insert_message(c, message_id, msg, copies))

    async def due_copies(self, now: float, limit: int) -> list[Copy]:
        return await self._read(reads.due_copies, now, _clamp(limit, 1, MAX_DUE))

    async def get_message(self, message_id: str) -> Message | None:
        return await self._read(reads.get_message, message_id)

    async def load_raw(self, message_id: str) -> bytes:
        """Raises KeyError for an unknown message."""
        raw = await self._read(reads.load_raw, message_id)
        if raw is None:
            raise KeyError(message_id)
        return raw

    async def load_message(self, message_id: str) -> tuple[Message, bytes] | None:
        return await self._read(reads.load_message, message_id)

    async def get_copy(self, copy_id: int) -> Copy | None:
        return await self._read(reads.get_copy, copy_id)

    async def record_links(self, copy_id: int, urls: Sequence[str]) -> None:
        await self._write(lambda c: writes.replace_links(c, copy_id, urls))

    async def record_outcome(
        self,
        copy_id: int,
        outcome: DeliveryOutcome,
        next_attempt_at: float | None,
        rewrite_note: str = "",
        links: Sequence[str] | None = None,
    ) -> None:
        urls = None if links is None else list(links)
        await self._write(
            lambda c: queue.record_outcome(c, copy_id, outcome, next_attempt_at, rewrite_note, urls)
        )

    async def record_parts(
        self,
        copy_id: int,
        parts: Sequence[CopyPart],
        rewrite_note: str = "",
        links: Sequence[str] | None = None,
    ) -> list[int]:
        wanted, urls = list(parts), None if links is None else list(links)
        return await self._write(
            lambda c: queue.record_parts(c, copy_id, wanted, rewrite_note, urls)
        )

    async def release_bodies(self) -> int:
        """One sweep over held bodies, a batch per write op; returns how many were released."""
        released, after = 0, ""
        while True:
            n, last = await self._write(functools.partial(bodies.release_step, after_id=after))
            released += n
            if last is None:
                return released
            after = last

    async def reclaim_space(self, keep_bytes: int) -> int:
        """Free pages beyond keep_bytes go back to the filesystem, a batch per write op;
        returns the bytes given back."""
        pages = 0
        while step := await self._write(lambda c: bodies.reclaim_step(c, keep_bytes)):
            pages += step
        page_size = await self._read(lambda c: int(c.execute("PRAGMA page_size").fetchone()[0]))
        return pages * page_size

    # --- queue operations and bounces -------------------------------------------
    async def queue_depth(self) -> dict[str, int]:
        return await self._read(queue.queue_depth)

    async def oldest_queued(self) -> float | None:
        return await self._read(queue.oldest_queued)

    async def count_queued(self) -> int:
        return await self._read(queue.count_queued)

    async def list_queue(self, after_id: int = 0, limit: int = 1000) -> list[Copy]:
        return await self._read(queue.list_queue, max(0, after_id), _clamp(limit, 1, MAX_DUE))

    async def copies_of(self, message_id: str) -> list[Copy]:
        return await self._read(queue.copies_of, message_id)

    async def retry_now(self, copy_ids: Sequence[int]) -> int:
        ids, now = list(copy_ids), time.time()
        return await self._write(lambda c: queue.retry_now(c, ids, now))

    async def requeue_bounced(self, copy_ids: Sequence[int]) -> int:
        ids, now = list(copy_ids), time.time()
        return await self._write(lambda c: queue.requeue_bounced(c, ids, now))

    async def delete_queued(self, copy_ids: Sequence[int]) -> int:
        ids = list(copy_ids)
        return await self._write(lambda c: queue.delete_queued(c, ids))

    async def due_bounces(self, now: float, limit: int) -> list[PendingBounce]:
        return await self._read(queue.due_bounces, now, _clamp(limit, 1, MAX_DUE))

    # --- leases ---------------------------------------------------------------------
    async def claim_copies(self, owner: str, now: float, lease: float, limit: int) -> list[Copy]:
        limit = _clamp(limit, 1, MAX_DUE)
        return await self._write(lambda c: leases.claim_copies(c, owner, now, now + lease, limit))

    async def renew_copies(self, owner: str, copy_ids: Sequence[int], lease: float) -> int:
        ids, until = list(copy_ids), time.time() + lease
        return await self._write(lambda c: leases.renew_copies(c, owner, ids, until))

    async def release_copies(self, owner: str, copy_ids: Sequence[int]) -> int:
        ids = list(copy_ids)
        return await self._write(lambda c: leases.release_copies(c, owner, ids))

    async def claim_bounces(
        self, owner: str, now: float, lease: float, limit: int
    ) -> list[PendingBounce]:
        limit = _clamp(limit, 1, MAX_DUE)
        return await self._write(lambda c: leases.claim_bounces(c, owner, now, now + lease, limit))

    async def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        now = time.time()
        return await self._write(lambda c: leases.take_named(c, name, owner, now, now + seconds))

    async def drop_lease(self, name: str, owner: str) -> None:
        await self._write(lambda c: leases.drop_named(c, name, owner))

    async def live_leases(self, prefix: str) -> int:
        return await self._read(leases.count_named, prefix, time.time())

    async def bounce_state(self, copy_id: int) -> str | None:
        return await self._read(queue.bounce_state, copy_id)

    async def settle_bounce(
        self, copy_id: int, state: str, reply: str, next_attempt_at: float | None = None
    ) -> None:
        await self._write(lambda c: queue.settle_bounce(c, copy_id, state, reply, next_attempt_at))

    # --- events ---------------------------------------------------------------
    async def record_event(self, event: Event) -> int:
        """Raises ValueError for an unknown copy or message (foreign keys)."""
        return await self._write(
            lambda c: writes.insert_event(c, event),
            single_statement=True,
            bulk=Bulk(writes.insert_events, event),
        )

    async def list_events(
        self,
        since_id: int = 0,
        kind: str | None = None,
        recipient: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(reads.list_events, max(0, since_id), kind, recipient, limit)

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        """Through the event writer process when it runs; bounded by hit_timeout."""
        return await self._hits.record_hit(event, relabel_client)

    async def record_hit_here(self, event: Event, relabel_client: bool = False) -> list[Event]:
        """An open without relabelling is one insert: no SAVEPOINT (the pixel's fast path)."""
        single = event.kind == "open" and not relabel_client
        return await self._write(
            lambda c: labels.record_hit(c, event, relabel_client),
            single_statement=single,
            bulk=Bulk(writes.insert_hits, event) if single else None,
        )

    async def record_replies(
        self, referenced: Sequence[str], rcpt_tos: Sequence[str], at: float
    ) -> list[Event]:
        refs, rcpts = tuple(referenced), tuple(rcpt_tos)
        return await self._write(lambda c: labels.record_replies(c, refs, rcpts, at))

    # --- privacy ----------------------------------------------------------------
    async def erase_recipient(self, address: str) -> dict[str, int]:
        return await self._write(lambda c: privacy.erase_recipient(c, address))

    async def purge_older_than(self, cutoff: float) -> dict[str, int]:
        """In batches, each its own write op, so events keep flowing meanwhile."""
        total = {"events": 0, "messages": 0}
        while True:
            step = await self._write(lambda c: privacy.purge_step(c, cutoff))
            for key, n in step.items():
                total[key] += n
            if not any(step.values()):
                return total

    # --- reports --------------------------------------------------------------
    async def list_messages(
        self, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Raises ValueError for a cursor this store did not hand out."""
        after = None if cursor is None else reports.decode_cursor(cursor)
        return await self._read(_snapshot(reports.list_messages), _clamp(limit, 1, MAX_PAGE), after)

    async def message_report(self, message_id: str) -> MessageReport | None:
        return await self._read(_snapshot(reports.message_report), message_id)

    # --- browsing (dashboard) -------------------------------------------------
    async def find_messages(
        self, where: MessageFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Raises ValueError for a cursor this store did not hand out."""
        after = None if cursor is None else reports.decode_cursor(cursor)
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(_snapshot(history.find_messages), limit, after, where)

    async def message_events(self, message_id: str, limit: int = 500) -> list[Event]:
        return await self._read(history.message_events, message_id, _clamp(limit, 1, MAX_PAGE))

    async def contact_report(self, address: str, limit: int = 200) -> ContactReport | None:
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(_snapshot(history.contact_report), address, limit)

    async def event_histogram(
        self, start: float, end: float, width: float, message_id: str | None = None
    ) -> list[EventBucket]:
        """Raises ValueError for more than MAX_BUCKETS buckets."""
        if width <= 0 or (end - start) / width > MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} buckets")
        return await self._read(history.event_histogram, start, end, width, message_id)

    # --- tags and mail clients -----------------------------------------------------
    async def list_tags(self, limit: int = 500) -> list[TagSummary]:
        return await self._read(tags.list_tags, _clamp(limit, 1, MAX_PAGE))

    async def tag_report(
        self, tag: str, since: float | None = None, until: float | None = None
    ) -> TagReport | None:
        low, high = tags.tag_range(since, until)
        return await self._read(_snapshot(tags.tag_report), tag, low, high)

    async def message_clients(self, message_id: str) -> list[ClientOpen]:
        return await self._read(tags.message_clients, message_id)

    async def tag_clients(
        self, tag: str, since: float | None = None, until: float | None = None
    ) -> list[ClientOpen]:
        low, high = tags.tag_range(since, until)
        return await self._read(tags.tag_clients, tag, low, high)

    # --- live feed and webhooks -------------------------------------------------
    async def last_event_id(self) -> int:
        return await self._read(feed.last_event_id)

    async def wait_for_events(self, at_most: float) -> None:
        """Nothing tells one SQLite connection of another process's commit: poll."""
        await asyncio.sleep(at_most)

    async def contact_counts(self, address: str) -> dict[str, dict[str, int]]:
        return await self._read(feed.contact_counts, address)

    async def want_webhooks(self, wanted: bool) -> None:
        await self._write(lambda c: outbox.want_webhooks(c, wanted))

    async def queue_webhooks(self, targets: Sequence[WebhookTarget], limit: int = 500) -> int:
        wanted, now, limit = list(targets), time.time(), _clamp(limit, 1, MAX_PAGE)
        return await self._write(lambda c: outbox.fan_out(c, wanted, limit, now))

    async def claim_webhooks(
        self, now: float, lease: float, limit: int = 50
    ) -> list[WebhookDelivery]:
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._write(lambda c: outbox.claim_due(c, now, lease, limit))

    async def settle_webhook(
        self,
        delivery_id: int,
        delivered: bool,
        error: str = "",
        next_attempt_at: float | None = None,
    ) -> None:
        await self._write(
            lambda c: outbox.settle(c, delivery_id, delivered, error, next_attempt_at)
        )

    async def webhook_backlog(self) -> dict[str, int]:
        return await self._read(outbox.outbox_counts)

    async def queue_entries(
        self, states: Sequence[str], before_id: int | None = None, limit: int = 100
    ) -> list[QueueEntry]:
        wanted = tuple(states)
        return await self._read(queue.queue_entries, wanted, before_id, _clamp(limit, 1, MAX_PAGE))

    async def list_webhooks(self, state: str | None = None, limit: int = 100) -> list[WebhookRow]:
        return await self._read(outbox.list_rows, state, _clamp(limit, 1, MAX_PAGE))

    async def retry_webhooks(self, delivery_ids: Sequence[int]) -> int:
        ids, now = [int(i) for i in delivery_ids][:MAX_PAGE], time.time()
        return await self._write(lambda c: outbox.retry_rows(c, ids, now))

    # --- plumbing -------------------------------------------------------------
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed or self._read_conn is None:
            raise StoreUnavailable("the store is closed")
        return await run_in_thread(self._read_conn, fn, *args)

    async def _write(
        self,
        op: Callable[[sqlite3.Connection], T],
        single_statement: bool = False,
        bulk: Bulk | None = None,
    ) -> T:
        if self._closed or self._writer is None:
            raise StoreUnavailable("the store is closed")
        return await self._writer.submit(op, single_statement, bulk)


class _InProcess:
    """The store's own writer, where the event writer process sends what it cannot take."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        return await self._store.record_hit_here(event, relabel_client)


def _snapshot(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a multi-query read in one read transaction, so its counts agree with each other."""

    def in_transaction(conn: sqlite3.Connection, *args: Any) -> T:
        conn.execute("BEGIN")
        try:
            return fn(conn, *args)
        finally:
            conn.execute("COMMIT")

    return in_transaction


def create_private(path: str) -> None:
    """Create the store file 0600 (owner only) before SQLite opens it; an existing file
    keeps its mode. SQLite gives the -wal and -shm files the main file's mode.

    The store holds the token-signing key and logged mail, so no other local user
    may read it, whatever the umask.
    """
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)  # exactly 0600, whatever the umask
    finally:
        os.close(fd)


async def _connect(path: str) -> aiosqlite.Connection:
    """aiosqlite.connect; a failed connect waits for its worker thread to end.

    aiosqlite stops the thread of a connection that failed to open without
    waiting for it, and the thread then reports to the event loop, which may
    be closed by then (a command that fails to open its store exits at once):
    an exception in a thread. Waiting here costs nothing on the normal path.
    """
    conn = aiosqlite.connect(path, isolation_level=None)
    try:
        return await conn
    except BaseException:
        thread = getattr(conn, "_thread", None)  # private, like _execute (writer.py)
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, CONNECT_STOP_TIMEOUT)
        raise
