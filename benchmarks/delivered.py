"""Delivered copies in a store, and the events recorded for them: what the benchmarks of
the tracking server (pixel.py, labelled.py; scaling.py and soak.py through pixel.py)
load it with and read back."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay.core.models import (  # noqa: E402
    CopySpec,
    DeliveryOutcome,
    Event,
    NewMessage,
    TrackingDecision,
)
from relay.core.store import Store  # noqa: E402

RECIPIENTS_PER_MESSAGE = 100


async def spool_delivered(store: Store, count: int) -> list[tuple[int, float]]:
    """`count` delivered copies, each its own recipient: (copy id, delivered at)."""
    decision = TrackingDecision(opens=True, clicks=True)
    spooled: list[str] = []
    for start in range(0, count, RECIPIENTS_PER_MESSAGE):
        rcpts = tuple(
            f"reader{n}@example.net"
            for n in range(start, min(count, start + RECIPIENTS_PER_MESSAGE))
        )
        message = NewMessage(
            mail_from="alice@example.com",
            rcpt_tos=rcpts,
            raw=b"Subject: bench\r\n\r\n<p>hello</p>\r\n",
            received_at=time.time() - 60,
            client_addr="127.0.0.1",
            auth_user=None,
            sender="alice@example.com",
            subject="bench",
            message_id_header=f"<bench-{start}@example.com>",
            decision=decision,
        )
        spooled.append(await store.spool(message, [CopySpec(r, (r,)) for r in rcpts]))
    ours = [copy for message_id in spooled for copy in await store.copies_of(message_id)]
    for copy in ours:
        await store.record_outcome(copy.id, DeliveryOutcome("delivered", "250 ok"), None)
    copies: list[tuple[int, float]] = []
    for copy in ours:
        fresh = await store.get_copy(copy.id)
        assert fresh is not None and fresh.delivered_at is not None
        copies.append((fresh.id, fresh.delivered_at))
    return copies


async def event_batches(store: Store) -> AsyncIterator[list[Event]]:
    """Every event in the store, a thousand at a time."""
    since = 0
    while batch := await store.list_events(since_id=since, limit=1000):
        yield batch
        since = max(e.id or 0 for e in batch)
