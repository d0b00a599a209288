"""The store interface: everything the relay and the HTTP servers persist.

Nothing outside relay.core.store speaks SQL; a PostgreSQL backend will
implement this same Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from relay.core.models import (
    Copy,
    CopySpec,
    DeliveryOutcome,
    Event,
    Message,
    MessageReport,
    MessageSummary,
    NewMessage,
)


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

    async def get_copy(self, copy_id: int) -> Copy | None: ...

    async def record_links(self, copy_id: int, urls: Sequence[str]) -> None:
        """The tracked links of a copy, by index (index i is urls[i])."""

    async def record_outcome(
        self,
        copy_id: int,
        outcome: DeliveryOutcome,
        next_attempt_at: float | None,
        rewrite_note: str = "",
    ) -> None:
        """delivered/permanent end the copy; temporary defers it to next_attempt_at."""

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

    # --- reports --------------------------------------------------------------
    async def list_messages(
        self, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[MessageSummary], str | None]:
        """Newest first; returns the page and the cursor of the next page (or None)."""

    async def message_report(self, message_id: str) -> MessageReport | None: ...
