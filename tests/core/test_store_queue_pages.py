"""What the dashboard's queue and webhooks pages read and do, on every backend."""

from __future__ import annotations

import time

from support.messages import BOB, CAROL, spool

from relay.core.models import DeliveryOutcome, Event, WebhookTarget
from relay.core.store import Store

DAN = "dan@example.com"


async def test_queue_entries_newest_first_with_their_message(store: Store) -> None:
    now = time.time()
    first = await spool(store, (BOB, CAROL), received_at=now - 60, subject="Older")
    second = await spool(store, (DAN,), received_at=now, subject="Newer")
    await store.record_outcome(first[BOB].id, DeliveryOutcome("temporary", "451 later"), now + 600)
    await store.record_outcome(first[CAROL].id, DeliveryOutcome("permanent", "550 no user"), None)
    waiting = await store.queue_entries(("queued", "deferred"))
    assert [(e.copy.recipient, e.copy.state, e.subject) for e in waiting] == [
        (DAN, "queued", "Newer"),
        (BOB, "deferred", "Older"),
    ]
    assert waiting[1].copy.last_reply == "451 later" and waiting[1].sender == "alice@example.com"
    assert abs(waiting[1].received_at - (now - 60)) < 1e-3
    bounced = await store.queue_entries(["bounced"])
    assert [(e.copy.recipient, e.copy.last_reply) for e in bounced] == [(CAROL, "550 no user")]
    assert await store.queue_entries(["queued", "deferred"], before_id=second[DAN].id) == [
        waiting[1]
    ]
    assert await store.queue_entries(["delivered", "nonsense"]) == []
    assert len(await store.queue_entries(["queued", "deferred", "bounced"], limit=1)) == 1


async def test_webhook_rows_are_listed_and_retried(store: Store) -> None:
    now = time.time()
    copies = await spool(store, (BOB,), received_at=now, subject="Hooked")
    await store.want_webhooks(True)
    copy = copies[BOB]
    await store.record_event(
        Event("open", copy.id, copy.message_id, BOB, now, "198.51.100.7", "UA")
    )
    await store.record_event(
        Event("open", copy.id, copy.message_id, BOB, now, "198.51.100.8", "UA")
    )
    hook = WebhookTarget("http://127.0.0.1:9/hook", ("open",))
    while await store.queue_webhooks([hook]):
        pass
    claimed = await store.claim_webhooks(now + 1, lease=60, limit=10)
    assert len(claimed) == 2
    await store.settle_webhook(
        claimed[0].id, delivered=False, error="HTTP 500", next_attempt_at=None
    )
    await store.settle_webhook(claimed[1].id, False, "timed out", next_attempt_at=now + 3600)
    rows = await store.list_webhooks()
    assert [(r.delivery.id, r.state, r.last_error) for r in rows] == [
        (claimed[1].id, "pending", "timed out"),
        (claimed[0].id, "failed", "HTTP 500"),
    ]
    assert rows[0].delivery.notice.kind == "open" and rows[0].delivery.notice.recipient == BOB
    assert rows[1].delivery.attempts == 1 and rows[1].delivery.endpoint == hook.url
    assert [r.delivery.id for r in await store.list_webhooks("failed")] == [claimed[0].id]
    assert await store.retry_webhooks([claimed[0].id, claimed[1].id, 10**9]) == 2
    assert await store.webhook_backlog() == {"queued": 0, "pending": 2, "failed": 0}
    due = await store.claim_webhooks(time.time() + 1, lease=60, limit=10)
    assert sorted(d.id for d in due) == sorted(d.id for d in claimed)
    assert await store.retry_webhooks([]) == 0


async def test_a_bounced_copy_is_sent_again_only_while_its_body_is_kept(store: Store) -> None:
    copies = await spool(store, (BOB, CAROL), subject="Again")
    bob, carol = copies[BOB], copies[CAROL]
    for copy in (bob, carol):
        await store.record_outcome(copy.id, DeliveryOutcome("permanent", "550 full"), None)
    await store.settle_bounce(carol.id, "sent", "250 ok")  # carol's DSN went out
    entries = {e.copy.id: e for e in await store.queue_entries(("bounced",))}
    assert entries[bob.id].body_kept and entries[carol.id].body_kept  # bob's DSN still waits
    assert await store.requeue_bounced([bob.id, carol.id, 10**9]) == 2
    assert await store.bounce_state(bob.id) is None  # not sent: dropped
    assert await store.bounce_state(carol.id) == "sent"  # sent: stays recorded
    taken = await store.claim_copies("w", time.time(), 60.0, 10)
    assert sorted(c.id for c in taken) == sorted([bob.id, carol.id])
    for copy in taken:
        await store.record_outcome(copy.id, DeliveryOutcome("delivered", "250 ok"), None)
    assert await store.release_bodies() >= 0
    assert await store.requeue_bounced([bob.id]) == 0  # delivered now: not bounced


async def test_a_released_body_cannot_be_sent_again(store: Store) -> None:
    [copy] = (await spool(store, (DAN,), subject="Gone")).values()
    await store.record_outcome(copy.id, DeliveryOutcome("permanent", "550 no"), None)
    await store.settle_bounce(copy.id, "sent", "250 ok")  # the last thing it was kept for
    await store.release_bodies()
    [entry] = await store.queue_entries(("bounced",))
    assert not entry.body_kept
    assert await store.requeue_bounced([copy.id]) == 0
    assert (await store.get_copy(copy.id)).state == "bounced"  # type: ignore[union-attr]
