"""The PostgreSQL backend: several processes on several hosts share one database.

Writes go through PostgresWriter (group commit on one connection in a thread
of its own); reads run on a small pool of read-only connections, so a report
never waits behind a batch of events. Every query is the SQLite backend's
(relay/core/store/sql/), run through the adapter in connection.py; this
module only arranges connections and transactions, method by method like
SQLiteStore. A closed or unreachable store raises StoreUnavailable, never a
psycopg error.

The schema is checked at open, never changed there: `relay migrate`
(``migrate_database``) applies it, once for all the nodes sharing it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

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
from relay.core.store.postgres import schema
from relay.core.store.postgres.connection import Connection, redact_url, translate_error
from relay.core.store.postgres.listen import EventListener
from relay.core.store.postgres.pool import ReadPool, snapshot
from relay.core.store.postgres.writer import PostgresWriter
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
from relay.core.store.sqlite.hitclient import HitWriter
from relay.core.store.sqlite.writer import Bulk

T = TypeVar("T")
MAX_PAGE = 1000
MAX_DUE = 10_000
MAX_BUCKETS = 1000
HIT_TIMEOUT = 1.0  # seconds a tracking hit may wait for its commit (Store.record_hit)
HITPROC = "relay.core.store.postgres.hitproc"  # the event writer process's module
SECRETS_LOCK = 0x72656C6179 + 1  # pg_advisory_xact_lock key: one first key per database


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


def migrate_database(url: str) -> tuple[int, int]:
    """`relay migrate`: bring the database's schema up to this relay's; (before, after).

    Blocking (call it from a thread in async code); StoreUnavailable when the
    server cannot be reached or the schema is newer than this relay's."""
    try:
        conn = Connection.connect(url)
    except Exception as exc:
        raise StoreUnavailable(f"cannot open {redact_url(url)}: {translate_error(exc)}") from exc
    try:
        return schema.migrate(conn)
    except StoreUnavailable:
        raise
    except Exception as exc:
        raise StoreUnavailable(f"cannot migrate {redact_url(url)}: {exc}") from exc
    finally:
        conn.close()


class PostgresStore:
    """The Store protocol over one PostgreSQL database (see relay.core.store.base)."""

    def __init__(
        self, url: str, events_process: bool = False, hit_timeout: float = HIT_TIMEOUT
    ) -> None:
        """events_process: tracking hits are committed by a process of their own
        (postgres/hitproc.py), as ``relay http`` wants; otherwise by this process's writer."""
        self.url = url
        self.hit_timeout = hit_timeout
        self._events_process = events_process
        self._hits = HitWriter(_InProcess(self), timeout=hit_timeout)
        self._writer: PostgresWriter | None = None
        self._reads: ReadPool | None = None
        self._open = False
        self._closed = False
        self._listener = EventListener(
            functools.partial(psycopg.connect, url, autocommit=True, application_name="relay")
        )

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.url)!r})"

    @property
    def events_pid(self) -> int | None:
        """The event writer process's pid while it runs (tests, logs)."""
        return self._hits.pid

    @property
    def transactions(self) -> int:
        """Write transactions committed so far (group commit makes this << writes)."""
        return 0 if self._writer is None else self._writer.transactions

    async def open(self) -> None:
        """Connect and check the schema (StoreUnavailable, one line, unless it is this
        relay's); nothing is created or changed here: see migrate_database."""
        writer = PostgresWriter(functools.partial(Connection.connect, self.url))
        self._writer = writer
        try:
            await writer.call(schema.check)
        except StoreUnavailable:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise StoreUnavailable(
                f"cannot open {redact_url(self.url)}: {translate_error(exc)}"
            ) from exc
        self._reads = ReadPool(functools.partial(Connection.connect, self.url, read_only=True))
        writer.start()
        self._open = True
        if self._events_process:
            self._hits = HitWriter(_InProcess(self), self.url, self.hit_timeout, child=HITPROC)
            await self._hits.start()

    async def close(self) -> None:
        """Flush queued writes, then close every connection; a second call does nothing."""
        if self._closed:
            return
        await self._hits.close()  # its last hits may fall back to the writer below
        self._closed = True
        await self._listener.close()
        if self._writer is not None:
            await self._writer.close()
        if self._reads is not None:
            await self._reads.close()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def secrets(self) -> list[str]:
        keys = await self._read(writes.read_secrets)
        return keys or await self._write(_first_secret)

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
        """Nothing to do: PostgreSQL's autovacuum makes the space of released bodies
        (their TOAST rows) reusable, and the files are the server's to manage."""
        return 0

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
            lambda c: writes.insert_event(c, event), bulk=Bulk(writes.insert_events, event)
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
        """Through the event writer process when it runs; bounded by hit_timeout
        (TimeoutError; the hit may still be committed later)."""
        return await self._hits.record_hit(event, relabel_client)

    async def record_hit_here(self, event: Event, relabel_client: bool = False) -> list[Event]:
        """In this process's writer. A plain hit joins its batch's one multi-row INSERT."""
        plain = event.kind == "open" and not relabel_client
        return await self._write(
            lambda c: labels.record_hit(c, event, relabel_client),
            bulk=Bulk(writes.insert_hits, event) if plain else None,
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
        return await self._read(snapshot(reports.list_messages), _clamp(limit, 1, MAX_PAGE), after)

    async def message_report(self, message_id: str) -> MessageReport | None:
        return await self._read(snapshot(reports.message_report), message_id)

    # --- browsing (dashboard) -------------------------------------------------
    async def find_messages(
        self, where: MessageFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Raises ValueError for a cursor this store did not hand out."""
        after = None if cursor is None else reports.decode_cursor(cursor)
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(snapshot(history.find_messages), limit, after, where)

    async def message_events(self, message_id: str, limit: int = 500) -> list[Event]:
        return await self._read(history.message_events, message_id, _clamp(limit, 1, MAX_PAGE))

    async def contact_report(self, address: str, limit: int = 200) -> ContactReport | None:
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(snapshot(history.contact_report), address, limit)

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
        return await self._read(snapshot(tags.tag_report), tag, low, high)

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
        """Woken by any node's commit of events (LISTEN/NOTIFY), or after timeout."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        await self._listener.wait(at_most)

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
        if self._closed or self._reads is None:
            raise StoreUnavailable("the store is closed")
        return await self._reads.run(fn, *args)

    async def _write(self, op: Callable[[Any], T], bulk: Bulk | None = None) -> T:
        if self._closed or not self._open or self._writer is None:
            raise StoreUnavailable("the store is closed")
        return await self._writer.submit(op, bulk)


def _first_secret(conn: Connection) -> list[str]:
    """writes.ensure_secret, one node at a time: two nodes starting together on an empty
    database would otherwise each add a first key."""
    conn.execute("SELECT pg_advisory_xact_lock(?)", (SECRETS_LOCK,))
    shared: Any = conn  # the shared SQL is typed for sqlite3; the adapter stands in
    return writes.ensure_secret(shared)


class _InProcess:
    """The store's own writer, where the event writer process sends what it cannot take."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        return await self._store.record_hit_here(event, relabel_client)
