"""Retention purge, erasure details and the open-collapsing window, on a real SQLite file."""

from __future__ import annotations

import time

from support.messages import BOB, CAROL, spool

from relay.core.models import (
    Copy,
    DeliveryOutcome,
    Event,
    WebhookTarget,
)
from relay.core.store import Store
from relay.core.store.sql.counting import OPEN_WINDOW
from relay.retention import RetentionPurger, purge_interval

DAY = 86400.0


def open_event(copy: Copy, at: float, klass: str = "human") -> Event:
    return Event("open", copy.id, copy.message_id, copy.recipient, at, "192.0.2.9", "UA", klass)  # type: ignore[arg-type]


async def test_purge_deletes_old_events_and_finished_messages(store: Store) -> None:
    now = time.time()
    old = await spool(store, (BOB, CAROL), received_at=now - 10 * DAY)
    new = await spool(store, (BOB,), received_at=now)
    await store.record_outcome(old[BOB].id, DeliveryOutcome("delivered", "250"), None)
    await store.record_event(open_event(new[BOB], now - 9 * DAY))  # an old event, a new message
    await store.record_event(open_event(new[BOB], now))
    counts = await RetentionPurger(store, 5 * DAY).purge_once(now)
    assert counts == {"events": 1, "messages": 0}  # carol's copy of the old one is still queued
    await store.record_outcome(old[CAROL].id, DeliveryOutcome("permanent", "550"), None)
    assert await RetentionPurger(store, 5 * DAY).purge_once(now) == {"events": 0, "messages": 1}
    assert await store.get_message(old[BOB].message_id) is None
    assert await store.get_copy(old[BOB].id) is None
    assert [e.at for e in await store.list_events()] == [now]


def test_purge_interval_is_bounded() -> None:
    assert purge_interval(365 * DAY) == 3600
    assert purge_interval(60) == 6
    assert purge_interval(0.5) == 1


async def test_erase_keeps_pending_copies_and_other_recipients(store: Store) -> None:
    now = time.time()
    copies = await spool(store, (BOB, CAROL), received_at=now)
    await store.record_event(open_event(copies[BOB], now))
    await store.record_event(open_event(copies[CAROL], now))
    counts = await store.erase_recipient(BOB)
    assert counts == {
        "events": 0,
        "copies": 0,
        "messages": 1,
        "pending_copies": 1,
        "webhooks": 1,
    }  # bob's open stays with the pending copy, but is never sent to a webhook
    pending = await store.get_copy(copies[BOB].id)
    assert pending is not None and pending.rcpt_tos == (BOB,)  # it must still be delivered
    await store.record_outcome(copies[BOB].id, DeliveryOutcome("delivered", "250 <bob>"), None)
    counts = await store.erase_recipient(BOB)
    assert counts == {
        "events": 1,
        "copies": 1,
        "messages": 0,
        "pending_copies": 0,
        "webhooks": 1,
    }  # the "delivered" notice
    erased = await store.get_copy(copies[BOB].id)
    assert erased is not None
    assert (erased.recipient, erased.rcpt_tos, erased.last_reply) == (None, (), "")
    assert [e.recipient for e in await store.list_events()] == [CAROL]


async def test_erase_deletes_the_unsent_webhooks_of_the_address(store: Store) -> None:
    now = time.time()
    copies = await spool(store, (BOB, CAROL), received_at=now)
    for copy in copies.values():
        await store.record_outcome(copy.id, DeliveryOutcome("delivered", "250"), None)
        await store.record_event(open_event(copy, now))
    hook = WebhookTarget("http://127.0.0.1:9/hook", ("open", "click", "delivered"))
    while await store.queue_webhooks([hook]):  # into the outbox, one row per notice
        pass
    claimed = await store.claim_webhooks(now + 1, lease=60, limit=100)
    assert len(claimed) == 4
    given_up = next(d for d in claimed if d.notice.recipient == BOB)
    await store.settle_webhook(given_up.id, delivered=False, error="500", next_attempt_at=None)
    await store.record_event(open_event(copies[BOB], now + 1))  # queued, not fanned out yet
    assert await store.webhook_backlog() == {"queued": 1, "pending": 3, "failed": 1}
    counts = await store.erase_recipient(BOB.upper())
    assert counts["webhooks"] == 3  # the queued open, the pending and the failed outbox rows
    while await store.queue_webhooks([hook]):
        pass
    assert await store.webhook_backlog() == {"queued": 0, "pending": 2, "failed": 0}
    due = await store.claim_webhooks(now + 3600, lease=60, limit=100)
    assert sorted(d.notice.kind for d in due) == ["delivered", "open"]
    assert {d.notice.recipient for d in due} == {CAROL}
    assert BOB not in str(due)


async def test_opens_within_the_window_collapse_in_counts(store: Store) -> None:
    now = time.time()
    copies = await spool(store, (BOB,), received_at=now)
    bob = copies[BOB]
    times = [now, now + 5, now + OPEN_WINDOW - 1, now + 2 * OPEN_WINDOW, now + 10 * OPEN_WINDOW]
    for at in times:
        await store.record_event(open_event(bob, at))
    await store.record_event(open_event(bob, now + 1, "proxy"))
    await store.record_event(open_event(bob, now + 2, "proxy"))
    report = await store.message_report(bob.message_id)
    assert report is not None
    [recipient] = report.recipients
    assert (recipient.opens["human"], recipient.opens["proxy"]) == (3, 1)
    assert (recipient.first_open, recipient.last_open) == (now, now + 10 * OPEN_WINDOW)
    assert len(await store.list_events()) == 7  # every raw event is kept


async def test_proxy_only_open_is_opened_maybe(store: Store) -> None:
    now = time.time()
    copies = await spool(store, (BOB, CAROL), received_at=now)
    await store.record_event(open_event(copies[BOB], now, "proxy"))
    await store.record_event(open_event(copies[CAROL], now, "proxy"))
    await store.record_event(open_event(copies[CAROL], now, "human"))
    [summary], _ = await store.list_messages()
    assert (summary.opens["unique_maybe"], summary.opens["unique_human"]) == (1, 1)
