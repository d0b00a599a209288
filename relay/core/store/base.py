"""The store interface: everything the relay and the HTTP servers persist.

Nothing outside relay.core.store speaks SQL, nor names a writer, a
connection or a process: each backend (sqlite/, postgres/) keeps its own.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Protocol

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


def holder_name(role: str) -> str:
    """A lease holder's name: the host and process it runs in, then ``role``."""
    return f"{socket.gethostname()}/{os.getpid()}/{role}"


# Each delivery worker holds a named lease DELIVERER_LEASE + its name while it runs:
# how /metrics on any node tells how many workers deliver from the store.
DELIVERER_LEASE = "deliverer/"


class StoreUnavailable(Exception):
    """The store could not be reached or did not answer in time."""


class Store(Protocol):
    async def open(self) -> None:
        """Create or migrate the schema and start the writer task."""

    async def close(self) -> None:
        """Flush pending writes and close."""

    async def ping(self) -> None:
        """Raise StoreUnavailable unless a trivial read succeeds."""

    async def secrets(self) -> list[str]:
        """The generated token keys, newest first; creates one on first use."""

    # --- spool and delivery -------------------------------------------------
    async def spool(self, msg: NewMessage, copies: Sequence[CopySpec]) -> str:
        """Store message and copies durably (fsync'd) and return the message id."""

    async def due_copies(self, now: float, limit: int) -> list[Copy]:
        """Copies in state queued/deferred whose next attempt is due, oldest first."""

    async def get_message(self, message_id: str) -> Message | None: ...

    async def load_raw(self, message_id: str) -> bytes: ...

    async def load_message(self, message_id: str) -> tuple[Message, bytes] | None:
        """get_message and load_raw in one read; None when either would find nothing."""

    async def get_copy(self, copy_id: int) -> Copy | None: ...

    async def record_links(self, copy_id: int, urls: Sequence[str]) -> None:
        """The tracked links of a copy, by index (index i is urls[i])."""

    async def record_outcome(
        self,
        copy_id: int,
        outcome: DeliveryOutcome,
        next_attempt_at: float | None,
        rewrite_note: str = "",
        links: Sequence[str] | None = None,
    ) -> None:
        """delivered/permanent end the copy; temporary defers it to next_attempt_at.

        A copy that ends bounced gets a bounce record in the same transaction. ``links``,
        when given, are recorded as record_links would, in the same write (one write per
        attempt instead of two)."""

    async def record_parts(
        self,
        copy_id: int,
        parts: Sequence[CopyPart],
        rewrite_note: str = "",
        links: Sequence[str] | None = None,
    ) -> list[int]:
        """A shared copy whose recipients got different outcomes: the copy keeps the first
        part, each other part becomes a new copy with its outcome; all in one transaction.
        Returns the copies' ids, in the order of parts. ``links`` as for record_outcome."""

    async def release_bodies(self) -> int:
        """Empty the raw body of every message no copy, bounce or log needs any more
        (done anyway when the last copy or bounce becomes final: this sweep catches what
        an older version or a crash left); returns how many were released."""

    async def reclaim_space(self, keep_bytes: int) -> int:
        """Give free space beyond keep_bytes back to the filesystem; returns bytes given."""

    # --- queue operations and bounces -------------------------------------------
    async def queue_depth(self) -> dict[str, int]:
        """Copies by state: queued, deferred, delivered, bounced."""

    async def oldest_queued(self) -> float | None:
        """When the message of the oldest copy waiting for delivery arrived (unix time),
        or None with no copy waiting."""

    async def count_queued(self) -> int:
        """Copies waiting for delivery (queued or deferred)."""

    async def list_queue(self, after_id: int = 0, limit: int = 1000) -> list[Copy]:
        """Queued and deferred copies with an id above after_id, by id."""

    async def copies_of(self, message_id: str) -> list[Copy]: ...

    async def retry_now(self, copy_ids: Sequence[int]) -> int:
        """Make these queued/deferred copies due now; returns how many were."""

    async def requeue_bounced(self, copy_ids: Sequence[int]) -> int:
        """Send these bounced copies again, due now, while their message's body is kept
        (a pending DSN is dropped); returns how many were."""

    async def delete_queued(self, copy_ids: Sequence[int]) -> int:
        """Drop queued/deferred copies without a bounce; returns how many were."""

    async def due_bounces(self, now: float, limit: int) -> list[PendingBounce]: ...

    # --- leases (store/sql/leases.py): work shared by any number of processes -----
    async def claim_copies(self, owner: str, now: float, lease: float, limit: int) -> list[Copy]:
        """Due copies nobody holds, taken by owner for lease seconds; oldest due first.
        Recording an outcome ends the lease; a holder that dies loses it when it ends."""

    async def renew_copies(self, owner: str, copy_ids: Sequence[int], lease: float) -> int:
        """Extend owner's leases on these copies by lease seconds from now; returns how
        many it still held."""

    async def release_copies(self, owner: str, copy_ids: Sequence[int]) -> int:
        """Give copies back untried (a stopping worker): others may take them at once."""

    async def claim_bounces(
        self, owner: str, now: float, lease: float, limit: int
    ) -> list[PendingBounce]:
        """Due pending bounces nobody holds, taken by owner; settle_bounce ends the lease."""

    async def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        """The named lease (one holder at a time: "purge", "sweep") for seconds from
        now, if free, expired or already owner's."""

    async def drop_lease(self, name: str, owner: str) -> None:
        """Give the named lease up, if owner holds it."""

    async def live_leases(self, prefix: str) -> int:
        """Named leases starting with prefix that have not ended ("deliverer/": workers)."""

    async def bounce_state(self, copy_id: int) -> str | None:
        """pending, sent, failed or skipped (null sender); None: the copy never bounced."""

    async def settle_bounce(
        self, copy_id: int, state: str, reply: str, next_attempt_at: float | None = None
    ) -> None:
        """sent or failed end a bounce; pending tries it again at next_attempt_at."""

    # --- events ---------------------------------------------------------------
    async def record_event(self, event: Event) -> int:
        """Group-committed: returns once the event's batch is durable."""

    async def list_events(
        self,
        since_id: int = 0,
        kind: str | None = None,
        recipient: str | None = None,
        limit: int = 1000,
    ) -> list[Event]: ...

    async def record_hit(self, event: Event, relabel_client: bool = False) -> list[Event]:
        """A tracking event (recipient taken from its copy) and the events it caused:
        an inferred open after a human click; with relabel_client (a honeypot hit),
        the client's other events of the message become bot. Returned with ids once
        durable. Bounded in time: TimeoutError when the store takes longer than its hit
        timeout (the hit may still be committed later)."""

    async def record_replies(
        self, referenced: Sequence[str], rcpt_tos: Sequence[str], at: float
    ) -> list[Event]:
        """Reply events (and inferred opens) for tracked messages whose Message-ID is in
        referenced and that went to one of rcpt_tos."""

    # --- privacy ----------------------------------------------------------------
    async def erase_recipient(self, address: str) -> dict[str, int]:
        """Delete an address's events and remove it from copies and envelopes; counts."""

    async def purge_older_than(self, cutoff: float) -> dict[str, int]:
        """Retention: delete events and finished messages older than cutoff; counts."""

    # --- reports --------------------------------------------------------------
    async def list_messages(
        self, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Newest first; returns the page and the cursor of the next page (or None)."""

    async def message_report(self, message_id: str) -> MessageReport | None: ...

    # --- browsing (dashboard) -------------------------------------------------
    async def find_messages(
        self, where: MessageFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """list_messages narrowed by sender, date, words, recipient, tag and copy state,
        with the same cursors."""

    async def message_events(self, message_id: str, limit: int = 500) -> list[Event]:
        """One message's events, oldest first."""

    async def contact_report(self, address: str, limit: int = 200) -> ContactReport | None:
        """One recipient address across messages; None when nothing went to it."""

    async def event_histogram(
        self, start: float, end: float, width: float, message_id: str | None = None
    ) -> list[EventBucket]:
        """Event counts per ``width``-second bucket of [start, end), by kind and class."""

    # --- tags and mail clients (store/sql/tags.py) -------------------------------
    async def list_tags(self, limit: int = 500) -> list[TagSummary]:
        """Every tag with its message count and newest use, most recently used first."""

    async def tag_report(
        self, tag: str, since: float | None = None, until: float | None = None
    ) -> TagReport | None:
        """A tag's campaign counts over messages received in [since, until); None: no message."""

    async def message_clients(self, message_id: str) -> list[ClientOpen]:
        """Human (not inferred) and proxy opens of one message by copy, class and user agent."""

    async def tag_clients(
        self, tag: str, since: float | None = None, until: float | None = None
    ) -> list[ClientOpen]:
        """message_clients over the tag's messages received in [since, until)."""

    # --- live feed and webhooks -------------------------------------------------
    async def last_event_id(self) -> int:
        """The highest event id so far (0 when none): where a new live feed starts."""

    async def wait_for_events(self, at_most: float) -> None:
        """Return once any process, on any node, may have recorded new events, or after
        at_most seconds: PostgreSQL wakes the caller at once (LISTEN/NOTIFY); SQLite simply
        waits them out, so its callers poll."""

    async def contact_counts(self, address: str) -> dict[str, dict[str, int]]:
        """An address's events by type (open, click, reply) and class, across messages."""

    async def want_webhooks(self, wanted: bool) -> None:
        """Whether events and outcomes are queued for webhooks at all (none configured: no)."""

    async def queue_webhooks(self, targets: Sequence[WebhookTarget], limit: int = 500) -> int:
        """Fan queued events out into one outbox row per endpoint that wants them;
        returns how many queued events were consumed (0: the queue is empty)."""

    async def claim_webhooks(
        self, now: float, lease: float, limit: int = 50
    ) -> list[WebhookDelivery]:
        """Due outbox rows, each hidden from other claims for ``lease`` seconds."""

    async def settle_webhook(
        self,
        delivery_id: int,
        delivered: bool,
        error: str = "",
        next_attempt_at: float | None = None,
    ) -> None:
        """Delivered rows go; failed ones retry at next_attempt_at, or stay as failed (None)."""

    async def webhook_backlog(self) -> dict[str, int]:
        """queued (not fanned out yet), pending and failed outbox rows."""

    # --- the dashboard's queue and webhooks pages ---------------------------------
    async def queue_entries(
        self, states: Sequence[str], before_id: int | None = None, limit: int = 100
    ) -> list[QueueEntry]:
        """Copies in these states (queued, deferred, bounced; others ignored), newest
        first, ids below before_id, each with its message's sender, subject and arrival."""

    async def list_webhooks(self, state: str | None = None, limit: int = 100) -> list[WebhookRow]:
        """Outbox rows (pending and failed, or only one of those), newest first."""

    async def retry_webhooks(self, delivery_ids: Sequence[int]) -> int:
        """Make these outbox rows pending and due now, failed ones too; returns how many."""
