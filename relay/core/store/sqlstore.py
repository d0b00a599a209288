"""The Store protocol written once for both engines (sqlite/, postgres/).

Every method runs the shared SQL (store/sql/) through two primitives each engine
provides: ``_read`` on one of its read connections, in that connection's thread,
and ``_write`` through its group-committing writer (store/batching.py). What
differs (opening, closing, the snapshot of a multi-query report, giving space
back, waiting for other processes' events) stays in each engine's store.
"""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

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
from relay.core.store.batching import BatchWriter, Bulk
from relay.core.store.sql import (
    bodies,
    feed,
    history,
    hits,
    leases,
    outbox,
    privacy,
    queue,
    reads,
    reports,
    tags,
    writes,
)

if TYPE_CHECKING:
    from relay.core.store.sqlite.hitclient import HitWriter

T = TypeVar("T")
MAX_PAGE = 1000
MAX_DUE = 10_000
MAX_BUCKETS = 1000
HIT_TIMEOUT = 1.0  # seconds a tracking hit may wait for its commit (Store.record_hit)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(int(value), high))


class SqlStore(ABC):
    """What SQLiteStore and PostgresStore share of the Store protocol (base.py)."""

    def __init__(self, events_process: bool, hit_timeout: float) -> None:
        """events_process: tracking hits are committed by a process of their own (the
        engine's hitproc.py), as ``relay http`` wants; otherwise by this process's writer."""
        self._events_process = events_process
        self._hits = _hit_writer(self, timeout=hit_timeout)
        self._writer: BatchWriter | None = None  # set once it runs: writes wait for open
        self._closed = False

    @property
    def events_pid(self) -> int | None:
        """The event writer process's pid while it runs (tests, logs)."""
        return self._hits.pid

    @property
    def transactions(self) -> int:
        """Write transactions committed so far (group commit makes this << writes)."""
        return 0 if self._writer is None else self._writer.transactions

    async def _start_event_writer(self, target: str, child: str) -> None:
        """At the end of open: the event writer process (the module ``child``) writing to
        target, when events_process asked for it."""
        if self._events_process:
            self._hits = _hit_writer(self, target, self._hits.timeout, child=child)
            await self._hits.start()

    async def close(self) -> None:
        """Flush queued writes, then close every connection; a second call does nothing."""
        if self._closed:
            return
        await self._hits.close()  # its last hits may fall back to the writer below
        self._closed = True
        if self._writer is not None:
            await self._writer.close()
        await self._close_connections()

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def secrets(self) -> list[str]:
        keys = await self._read(writes.read_secrets)
        return keys or await self._write(self._first_secret)

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
        """Through the event writer process when it runs; bounded by hit_timeout
        (TimeoutError; the hit may still be committed later)."""
        return await self._hits.record_hit(event, relabel_client)

    async def record_hit_here(self, event: Event, relabel_client: bool = False) -> list[Event]:
        """In this process's writer. An open without relabelling is one insert (the pixel's
        fast path): no SAVEPOINT on SQLite, and it joins its batch's multi-row INSERT."""
        single = event.kind == "open" and not relabel_client
        return await self._write(
            lambda c: hits.record_hit(c, event, relabel_client),
            single_statement=single,
            bulk=Bulk(writes.insert_hits, event) if single else None,
        )

    async def record_replies(
        self, referenced: Sequence[str], rcpt_tos: Sequence[str], at: float
    ) -> list[Event]:
        refs, rcpts = tuple(referenced), tuple(rcpt_tos)
        return await self._write(lambda c: hits.record_replies(c, refs, rcpts, at))

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
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(self._snapshot(reports.list_messages), limit, after)

    async def message_report(self, message_id: str) -> MessageReport | None:
        return await self._read(self._snapshot(reports.message_report), message_id)

    # --- browsing (dashboard) -------------------------------------------------
    async def find_messages(
        self, where: MessageFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Raises ValueError for a cursor this store did not hand out."""
        after = None if cursor is None else reports.decode_cursor(cursor)
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(self._snapshot(history.find_messages), limit, after, where)

    async def message_events(self, message_id: str, limit: int = 500) -> list[Event]:
        return await self._read(history.message_events, message_id, _clamp(limit, 1, MAX_PAGE))

    async def contact_report(self, address: str, limit: int = 200) -> ContactReport | None:
        limit = _clamp(limit, 1, MAX_PAGE)
        return await self._read(self._snapshot(history.contact_report), address, limit)

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
        return await self._read(self._snapshot(tags.tag_report), tag, low, high)

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
    async def _write(
        self, op: Callable[[Any], T], single_statement: bool = False, bulk: Bulk | None = None
    ) -> T:
        """op(connection) in the writer's next batch; its result once that is committed."""
        if self._closed or self._writer is None:
            raise StoreUnavailable("the store is closed")
        return await self._writer.submit(op, single_statement, bulk)

    @abstractmethod
    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(connection, *args) on a read connection, in its thread; StoreUnavailable
        once closed."""

    @staticmethod
    @abstractmethod
    def _snapshot(fn: Callable[..., T]) -> Callable[..., T]:
        """fn as a multi-query read in one read transaction, so its counts agree."""

    @staticmethod
    def _first_secret(conn: Any) -> list[str]:
        """The first token key of an empty store (writes.ensure_secret)."""
        return writes.ensure_secret(conn)

    @abstractmethod
    async def _close_connections(self) -> None:
        """At close, once the writer has stopped: the engine's other connections."""


class _InProcess:
    """The store's own writer, where the event writer process sends what it cannot take."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        return await self._store.record_hit_here(event, relabel_client)


def _hit_writer(store: SqlStore, *args: Any, **kwargs: Any) -> HitWriter:
    """The store's HitWriter, falling back to its own writer (_InProcess)."""
    # Imported here: importing sqlite.hitclient first runs sqlite/__init__, whose store
    # imports this module, a cycle whenever postgres/ is imported before sqlite/.
    from relay.core.store.sqlite.hitclient import HitWriter

    return HitWriter(_InProcess(store), *args, **kwargs)
