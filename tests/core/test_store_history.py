"""The browsing reads (filters, timelines, contacts, histograms) and the bulk loader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relay.core.config import StoreConfig
from relay.core.models import CopySpec, Event, MessageFilter, NewMessage, TrackingDecision
from relay.core.store import Store, open_store
from relay.core.store.sql.history import id_bound
from relay.core.store.sqlite.bulk import BulkLoader

BOB, CAROL = "bob@example.net", "carol@example.org"
DAY = 86400.0


def new_message(subject: str, at: float, sender: str = "alice@example.com") -> NewMessage:
    return NewMessage(
        mail_from=sender,
        rcpt_tos=(BOB, CAROL),
        raw=b"Subject: x\r\n\r\nhi\r\n",
        received_at=at,
        client_addr="127.0.0.1",
        auth_user=None,
        sender=sender,
        subject=subject,
        message_id_header="<m@example.com>",
        decision=TrackingDecision(opens=True, clicks=True),
    )


SPECS = [CopySpec(BOB, (BOB,)), CopySpec(CAROL, (CAROL,))]


def test_id_bound_orders_like_message_ids() -> None:
    from relay.core.store.sql.writes import new_message_id

    now = time.time()
    assert id_bound(now - 1) <= new_message_id(now) < id_bound(now + 1)


async def test_find_messages_by_sender_and_date(store: Store) -> None:
    start = time.time() - 30 * DAY
    for i in range(4):
        await store.spool(new_message(f"a{i}", start + i * DAY), SPECS)
        await store.spool(new_message(f"b{i}", start + i * DAY, "bob@example.com"), SPECS)
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
    message_id = await store.spool(new_message("launch", now - 100), SPECS)
    due = await store.due_copies(now + 10, 10)
    copies = {c.recipient: c.id for c in due}
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
        message_id, ids = load.add_message(new_message("bulk", now), SPECS)
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
