"""The store on every backend: durability, delivery states, group commit, limits."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest
from support.messages import RECIPIENTS, copy_specs, new_message
from support.stores import AnyStore, Backend

from relay.core.config import StoreConfig
from relay.core.models import DeliveryOutcome, Event, NewMessage, TrackingDecision
from relay.core.store import Store, StoreUnavailable, migrate_store, open_store
from relay.core.store.sqlite import SQLiteStore
from relay.core.store.sqlite.schema import SCHEMA_VERSION

T0 = 1_700_000_000.0


def offer(
    rcpts: tuple[str, ...] = RECIPIENTS, received_at: float = T0, subject: str = "Offer"
) -> NewMessage:
    """Every field set, a body that is not valid UTF-8: what the store must keep as given."""
    return new_message(
        rcpts,
        raw=b"From: alice@example.com\r\nSubject: Offer\r\n\r\n<p>hi \xff</p>\r\n",
        received_at=received_at,
        auth_user="alice",
        subject=subject,
        message_id_header="<offer-1@example.com>",
        decision=TrackingDecision(opens=True, clicks=False, reasons=("X-Track: opens",)),
        in_reply_to=("<earlier@example.net>",),
    )


def an_event(copy_id: int, message_id: str, at: float = T0 + 100) -> Event:
    return Event("open", copy_id, message_id, "bob@example.net", at, "192.0.2.1", "Mozilla/5.0")


async def test_a_decision_keeps_how_copies_are_made_and_older_rows_read_as_before(
    backend: Backend, store: AnyStore
) -> None:
    """The rewrite and signing choices travel in the decision's JSON; a row written
    before they did has none of them, and delivery takes them from the config."""
    decision = TrackingDecision(
        opens=True, clicks=True, pixel_position="top", honeypot=True,
        skip_bare_url_links=False, exclude_links=("unsubscribe", r"\.pdf$"),
        max_links_per_part=50, avoid_image_only=False, resign=True,
    )  # fmt: skip
    msg = dataclasses.replace(new_message(), decision=decision)
    message_id = await store.spool(msg, copy_specs(msg))
    stored = await store.get_message(message_id)
    assert stored is not None and stored.decision == decision
    older = (
        '{"opens": true, "clicks": false, "log_copy": false, "per_recipient": true,'
        ' "base_url": "", "reasons": ["config: opens on, clicks off"]}'
    )
    backend.run("UPDATE messages SET decision = ? WHERE id = ?", (older, message_id))
    again = await store.get_message(message_id)
    assert again is not None
    assert again.decision == TrackingDecision(
        opens=True, clicks=False, reasons=("config: opens on, clicks off",)
    )
    assert again.decision.pixel_position is None and again.decision.resign is None


async def test_spooled_message_survives_reopen(backend: Backend) -> None:
    first = await backend.open()
    msg = offer(subject="caf\udce9 bad bytes")  # surrogateescape'd, must not fail
    message_id = await first.spool(msg, copy_specs(msg))
    await first.close()

    again = await backend.open()
    try:
        stored = await again.get_message(message_id)
        assert stored is not None
        assert stored.rcpt_tos == msg.rcpt_tos
        assert stored.decision == msg.decision
        assert stored.auth_user == "alice"
        assert stored.subject == "caf\ufffd bad bytes"
        assert await again.load_raw(message_id) == msg.raw
        copies = await again.due_copies(T0, 10)
        assert [(c.recipient, c.rcpt_tos, c.state) for c in copies] == [
            ("bob@example.net", ("bob@example.net",), "queued"),
            ("carol@example.org", ("carol@example.org",), "queued"),
        ]
        assert await again.get_copy(copies[0].id) == copies[0]
    finally:
        await again.close()


async def test_acknowledged_writes_are_committed(store: AnyStore, backend: Backend) -> None:
    """Another connection sees the rows the moment spool/record_event return."""
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    event_id = await store.record_event(an_event(copy.id, message_id))
    assert backend.rows("SELECT count(*) FROM messages") == [(1,)]
    assert backend.rows("SELECT id FROM events") == [(event_id,)]


async def test_a_sqlite_store_is_in_wal_mode_at_this_version(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    with sqlite3.connect(tmp_path / "relay.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    other.close()


async def test_message_ids_are_url_safe_and_sort_by_time(store: AnyStore) -> None:
    older = await store.spool(offer(received_at=T0), [])
    newer = await store.spool(offer(received_at=T0 + 0.01), [])
    assert older < newer
    assert older.isalnum() and len(older) == 20


async def test_due_copies_order_limit_and_deferral(store: AnyStore) -> None:
    late = offer(("late@example.net",), received_at=T0 + 50)
    early = offer(("early@example.net", "early2@example.net"), received_at=T0)
    await store.spool(late, copy_specs(late))
    await store.spool(early, copy_specs(early))
    assert await store.due_copies(T0 - 1, 10) == []
    due = await store.due_copies(T0 + 60, 10)
    assert [c.recipient for c in due] == [
        "early@example.net",
        "early2@example.net",
        "late@example.net",
    ]
    assert [c.recipient for c in await store.due_copies(T0 + 60, 1)] == ["early@example.net"]

    temporary = DeliveryOutcome("temporary", "451 4.3.0 try later")
    await store.record_outcome(due[0].id, temporary, T0 + 500)
    assert [c.recipient for c in await store.due_copies(T0 + 60, 10)] == [
        "early2@example.net",
        "late@example.net",
    ]
    deferred = (await store.due_copies(T0 + 500, 10))[-1]
    assert (deferred.id, deferred.state, deferred.attempts) == (due[0].id, "deferred", 1)
    assert (deferred.last_reply, deferred.next_attempt_at) == ("451 4.3.0 try later", T0 + 500)


async def test_record_outcome_transitions(store: AnyStore) -> None:
    msg = offer(("a@x.example", "b@x.example", "c@x.example"))
    await store.spool(msg, copy_specs(msg))
    a, b, c = await store.due_copies(T0, 10)
    await store.record_outcome(a.id, DeliveryOutcome("temporary", "421 busy"), T0 + 60)
    await store.record_outcome(a.id, DeliveryOutcome("delivered", "250 ok", "Q1"), None, "plain")
    await store.record_outcome(b.id, DeliveryOutcome("permanent", "550 no such user"), None)
    await store.record_outcome(c.id, DeliveryOutcome("temporary", "gave up"), None)
    got_a, got_b, got_c = [await store.get_copy(x.id) for x in (a, b, c)]
    assert got_a is not None and got_b is not None and got_c is not None
    assert (got_a.state, got_a.attempts, got_a.queue_id) == ("delivered", 2, "Q1")
    assert got_a.delivered_at is not None and got_a.rewrite_note == "plain"
    assert (got_b.state, got_b.last_reply, got_b.delivered_at) == (
        "bounced",
        "550 no such user",
        None,
    )
    assert got_c.state == "bounced"
    assert await store.due_copies(T0 + 10**6, 10) == []
    with pytest.raises(ValueError):
        await store.record_outcome(999, DeliveryOutcome("delivered", "250"), None)


async def test_group_commit_persists_every_event(backend: Backend) -> None:
    store = await backend.open()
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    before = store.transactions
    ids = await asyncio.gather(
        *(store.record_event(an_event(copy.id, message_id)) for _ in range(1000))
    )
    commits = store.transactions - before
    await store.close()
    assert len(set(ids)) == 1000
    assert 1 <= commits <= 20, commits

    assert backend.rows("SELECT count(*) FROM events") == [(1000,)]
    again = await backend.open()
    try:
        assert len(await again.list_events(limit=5000)) == 1000  # capped page
        last = max(ids)  # concurrent writes: ids follow commits, not the order of calls
        assert [e.id for e in await again.list_events(since_id=last - 1)] == [last]
    finally:
        await again.close()


async def test_a_failing_write_does_not_fail_its_batch(store: AnyStore) -> None:
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    before = store.transactions
    results = await asyncio.gather(
        store.record_event(an_event(copy.id, message_id)),
        store.record_event(an_event(424242, message_id)),  # no such copy: foreign key
        store.record_links(777, ["https://x.example/"]),  # no such copy
        store.record_event(an_event(copy.id, message_id)),
        return_exceptions=True,
    )
    assert store.transactions - before == 1  # all four went in one transaction
    assert isinstance(results[0], int) and isinstance(results[3], int)
    assert isinstance(results[1], ValueError) and isinstance(results[2], ValueError)
    assert [e.id for e in await store.list_events()] == [results[0], results[3]]


async def test_an_outcome_for_no_copy_fails_alone_in_a_batch_that_commits(
    store: AnyStore,
) -> None:
    """On PostgreSQL an outcome reads nothing before its batch's COMMIT: a copy that does
    not exist is found out from the UPDATE's row count once the batch came back."""
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    before = store.transactions
    results = await asyncio.gather(
        store.record_event(an_event(copy.id, message_id)),
        store.record_outcome(888, DeliveryOutcome("delivered", "250"), None, links=["u"]),
        store.record_outcome(copy.id, DeliveryOutcome("delivered", "250"), None, links=["u"]),
        return_exceptions=True,
    )
    assert store.transactions - before == 1
    assert isinstance(results[0], int) and results[2] is None
    assert isinstance(results[1], ValueError) and "no copy 888" in str(results[1])
    assert (await store.queue_depth())["delivered"] == 1


async def test_a_half_done_write_is_rolled_back_alone(store: AnyStore) -> None:
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    await store.record_links(copy.id, ["https://old.example/"])
    before = store.transactions
    results = await asyncio.gather(
        store.record_event(an_event(copy.id, message_id)),
        # deletes the old links, then fails on the bad URL: the delete must be undone
        store.record_links(copy.id, ["https://new.example/", None]),  # type: ignore[list-item]
        store.record_event(an_event(copy.id, message_id)),
        return_exceptions=True,
    )
    assert store.transactions - before == 1
    assert isinstance(results[1], TypeError)
    assert len(await store.list_events()) == 2
    report = await store.message_report(message_id)
    assert report is not None
    assert [link.url for link in report.recipients[0].links] == ["https://old.example/"]


async def test_close_flushes_queued_writes(backend: Backend) -> None:
    store = await backend.open()
    msg = offer()
    message_id = await store.spool(msg, copy_specs(msg))
    copy = (await store.due_copies(T0, 1))[0]
    tasks = [
        asyncio.create_task(store.record_event(an_event(copy.id, message_id))) for _ in range(50)
    ]
    await asyncio.sleep(0)  # every task has queued its write
    await store.close()
    ids = await asyncio.gather(*tasks)
    assert len(set(ids)) == 50
    assert backend.rows("SELECT count(*) FROM events") == [(50,)]


async def test_secrets_are_created_once_and_persist(backend: Backend) -> None:
    first = await backend.open()
    keys = await first.secrets()
    assert len(keys) == 1 and len(keys[0]) >= 43
    assert await first.secrets() == keys
    await first.close()
    again = await backend.open()
    try:
        assert await again.secrets() == keys
    finally:
        await again.close()


async def test_closed_store_is_unavailable(backend: Backend) -> None:
    store: Store = await backend.open()
    await store.ping()
    await store.close()
    await store.close()  # harmless
    for call in (
        store.ping(),
        store.secrets(),
        store.due_copies(T0, 1),
        store.spool(offer(), []),
    ):
        with pytest.raises(StoreUnavailable):
            await call


def sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    """And leaves no connection thread behind to report to a loop that may be gone."""
    before = sqlite_threads()
    store = open_store(StoreConfig(path=str(tmp_path / "missing-dir" / "relay.db")))
    with pytest.raises(StoreUnavailable, match="missing-dir"):
        await store.open()
    assert not sqlite_threads() - before


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = open_store(StoreConfig(path=str(path)))
    with pytest.raises(StoreUnavailable, match="newer"):
        await store.open()


async def test_migrate_store_brings_either_engine_to_this_version(backend: Backend) -> None:
    """`relay migrate`: explicit on PostgreSQL, and harmless on SQLite (which migrates
    on open anyway); the second run changes nothing."""
    assert await migrate_store(backend.config) == (0, SCHEMA_VERSION)
    assert await migrate_store(backend.config) == (SCHEMA_VERSION, SCHEMA_VERSION)
    store = await backend.open()
    await store.ping()
    await store.close()


async def test_load_raw_of_unknown_message_is_key_error(store: AnyStore) -> None:
    with pytest.raises(KeyError):
        await store.load_raw("0123456789abcdef0123")
    assert await store.get_message("nope") is None
    assert await store.get_copy(1) is None
