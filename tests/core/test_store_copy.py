"""`relay store-copy`: a SQLite store with traffic moved into PostgreSQL (store/copying.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support.messages import spool, spool_one
from support.stores import open_sqlite

from relay.core.config import StoreConfig
from relay.core.models import DeliveryOutcome, Event
from relay.core.store import StoreUnavailable, migrate_store, open_store
from relay.core.store.copying import copy_store, count_rows

A, B = "a@example.net", "b@example.net"


async def filled_sqlite(path: Path) -> tuple[str, list[int], list[str]]:
    """A store with a delivered copy, a bounced one, a queued one, events and a key."""
    store = await open_sqlite(path)
    try:
        keys = await store.secrets()
        spooled = await spool(
            store, (A, B, "c@example.net"), raw=b"Subject: s\r\n\r\n<a href=x>x</a>\r\n"
        )
        mid, (a, b, c) = spooled.message_id, spooled.values()
        await store.record_links(a.id, ["https://example.com/1"])
        await store.record_outcome(a.id, DeliveryOutcome("delivered", "250 ok", "Q1"), None)
        await store.record_outcome(b.id, DeliveryOutcome("permanent", "550 no"), None)
        for kind in ("open", "click"):
            url, index = ("https://example.com/1", 0) if kind == "click" else ("", None)
            hit = Event(kind, a.id, mid, A, time.time(), "192.0.2.1", "Firefox/120", "human",
                        (), url, index)  # fmt: skip
            await store.record_hit(hit)
        return mid, [a.id, b.id, c.id], keys
    finally:
        await store.close()


async def test_a_sqlite_store_moves_into_postgresql_whole(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "relay.db"
    mid, ids, keys = await filled_sqlite(source)
    await migrate_store(StoreConfig(url=postgres_url))
    seen: list[int] = []
    report = await asyncio.to_thread(copy_store, source, postgres_url, seen.append)
    assert report.matches, report.counts
    assert sum(seen) == await asyncio.to_thread(count_rows, source) > 0
    assert report.counts["events"] == (2, 2)  # the open and the click

    target = open_store(StoreConfig(url=postgres_url))
    await target.open()
    try:
        assert await target.secrets() == keys  # tokens already sent still verify
        copies = {c.id: c for c in await target.copies_of(mid)}
        assert [copies[i].state for i in ids] == ["delivered", "bounced", "queued"]
        assert copies[ids[0]].queue_id == "Q1"
        assert await target.bounce_state(ids[1]) == "pending"
        report_after = await target.message_report(mid)
        assert report_after is not None
        assert [c.id for c in await target.claim_copies("w", time.time(), 60, 10)] == [ids[2]]
        # New rows continue after the copied ids, never reusing one.
        _, fresh = await spool_one(target, A)
        assert fresh > max(ids)
        assert await target.list_events(kind="reply") == []
        # The queue as it was, no webhook queued again for copied events (triggers off).
        assert (await target.webhook_backlog())["queued"] == report.counts["webhook_queue"][0]
    finally:
        await target.close()


async def test_a_database_that_is_not_empty_or_not_migrated_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "relay.db"
    await filled_sqlite(source)
    with pytest.raises(StoreUnavailable, match="relay migrate"):
        await asyncio.to_thread(copy_store, source, postgres_url)
    await migrate_store(StoreConfig(url=postgres_url))
    await asyncio.to_thread(copy_store, source, postgres_url)
    with pytest.raises(StoreUnavailable, match="not empty"):
        await asyncio.to_thread(copy_store, source, postgres_url)
    with pytest.raises(StoreUnavailable, match="no such SQLite store"):
        await asyncio.to_thread(copy_store, tmp_path / "missing.db", postgres_url)
