"""The browsing reads (filters, timelines, contacts, histograms) and the bulk loader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.messages import BOB, CAROL, copy_specs, new_message, spool

from relay.core.config import StoreConfig
from relay.core.models import Event, MessageFilter
from relay.core.store import Store, open_store
from relay.core.store.sql.history import id_bound
from relay.core.store.sqlite.bulk import BulkLoader

DAY = 86400.0


def test_id_bound_orders_like_message_ids() -> None:
    from relay.core.store.sql.writes import new_message_id

    now = time.time()
    assert id_bound(now - 1) <= new_message_id(now) < id_bound(now + 1)


def test_ids_made_in_one_millisecond_sort_in_the_order_made() -> None:
    from relay.core.store.sql.writes import new_message_id

    now = time.time()
    ids = [new_message_id(now) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i[:12] for i in ids} == {f"{int(now * 1000):012x}"}


async def test_find_messages_by_sender_and_date(store: Store) -> None:
    start = time.time() - 30 * DAY
    for i in range(4):
        await spool(store, subject=f"a{i}", received_at=start + i * DAY)
        await spool(
            store, subject=f"b{i}", received_at=start + i * DAY, mail_from="bob@example.com"
        )
    page, cursor = await store.find_messages(MessageFilter(sender="bob@example.com"), limit=3)
    assert [s.message.subject for s in page] == ["b3", "b2", "b1"]
    assert cursor is not None
    rest, end = await store.find_messages(MessageFilter(sender="bob@example.com"), 3, cursor)
    assert ([s.message.subject for s in rest], end) == (["b0"], None)
    window = MessageFilter(since=start + DAY, until=start + 3 * DAY)
    found, _ = await store.find_messages(window, limit=50)
    assert sorted(s.message.subject for s in found) == ["a1", "a2", "b1", "b2"]
    with pytest.raises(ValueError):
        await store.find_messages(MessageFilter(), 10, "not-a-cursor!")


async def test_timeline_contact_and_histogram(store: Store) -> None:
    now = time.time()
    launch = await spool(store, subject="launch", received_at=now - 100)
    message_id, copies = launch.message_id, launch.ids
    events = [
        Event("open", copies[BOB], message_id, BOB, now - 50, "192.0.2.1", "TB"),
        Event("open", copies[BOB], message_id, BOB, now - 40, "17.0.0.1", "x", klass="proxy"),
        Event("click", copies[BOB], message_id, BOB, now - 30, "192.0.2.1", "FF", url="u"),
        Event("open", copies[CAROL], message_id, CAROL, now - 20, "192.0.2.9", "x", klass="bot"),
    ]
    for event in events:
        await store.record_event(event)
    timeline = await store.message_events(message_id)
    assert [e.at for e in timeline] == sorted(e.at for e in events)
    contact = await store.contact_report(BOB)
    assert contact is not None
    assert (contact.last_open, contact.last_click, contact.last_reply) == (now - 50, now - 30, None)
    assert [e.kind for e in contact.events] == ["click", "open", "open"]  # newest first
    assert [m.subject for m, _ in contact.deliveries] == ["launch"]
    carol = await store.contact_report(CAROL)
    assert carol is not None and carol.last_open is None  # a bot's fetch is not an open
    assert await store.contact_report("nobody@example.com") is None
    buckets = await store.event_histogram(now - 3600, now, 3600)
    counts = {(b.kind, b.klass): b.count for b in buckets}
    assert counts == {("open", "human"): 1, ("open", "proxy"): 1, ("click", "human"): 1,
                      ("open", "bot"): 1}  # fmt: skip
    assert await store.event_histogram(now - 3600, now, 3600, message_id="nope") == []
    with pytest.raises(ValueError):
        await store.event_histogram(0, now, 1)


async def test_bulk_loader_fills_a_store_the_relay_then_reads(tmp_path: Path) -> None:
    path = str(tmp_path / "bulk.db")
    now = time.time()
    with BulkLoader(path) as load:
        msg = new_message(subject="bulk", received_at=now)
        message_id, ids = load.add_message(msg, copy_specs(msg))
        load.add_links(ids[0], ["https://example.com/"])
        added = load.add_events(
            Event("open", ids[0], message_id, BOB, now + i * 3600, "192.0.2.1", "TB")
            for i in range(5)  # an hour apart: five reads, not one
        )
    assert added == 5 and len(ids) == 2
    store = open_store(StoreConfig(path=path))
    await store.open()
    try:
        report = await store.message_report(message_id)
        assert report is not None
        assert report.recipients[0].opens["human"] == 5
        assert report.recipients[0].links[0].url == "https://example.com/"
    finally:
        await store.close()
