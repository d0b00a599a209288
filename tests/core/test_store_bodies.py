"""Bodies only while needed (schema step 7): released when the last copy or bounce is
final unless logged, swept after a crash or an upgrade; links stored once per message
(every backend). On SQLite, the space is reused and given back to the filesystem."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from support.messages import RECIPIENTS, new_message, spool_message
from support.stores import AnyStore, Backend, open_sqlite

from relay.core.models import DeliveryOutcome, NewMessage, TrackingDecision
from relay.core.store.sqlite import SQLiteStore
from relay.core.store.sqlite.schema import MIGRATIONS

T0 = 1_700_000_000.0
DELIVERED = DeliveryOutcome("delivered", "250 2.0.0 Ok: queued as X")
DEFERRED = DeliveryOutcome("temporary", "451 try later")
BOUNCED = DeliveryOutcome("permanent", "550 no such user")


def message(size: int = 2000, logged: bool = False, mail_from: str = "a@example.com") -> NewMessage:
    """A random body of `size` bytes, so that bodies neither compress nor share pages."""
    body = (b"<p>" + os.urandom(size // 2).hex().encode() + b"</p>\r\n")[:size]
    return new_message(
        RECIPIENTS,
        mail_from=mail_from,
        sender="a@example.com",
        raw=b"From: a@example.com\r\nSubject: s\r\n\r\n" + body,
        received_at=T0,
        decision=TrackingDecision(opens=True, clicks=True, log_copy=logged),
    )


async def spool(store: AnyStore, msg: NewMessage) -> tuple[str, list[int]]:
    spooled = await spool_message(store, msg)
    return spooled.message_id, list(spooled.ids.values())


async def body_kept(store: AnyStore, message_id: str) -> bool:
    try:
        await store.load_raw(message_id)
    except KeyError:
        return False
    return True


def raw_column(backend: Backend, message_id: str) -> tuple[int, str, int]:
    """(bytes in the raw column, body state, recorded size), read by another connection."""
    [row] = backend.rows("SELECT length(raw), body, size FROM messages WHERE id = ?", (message_id,))
    return int(row[0]), str(row[1]), int(row[2])


async def test_delivered_unlogged_message_keeps_everything_but_its_body(
    store: AnyStore, backend: Backend
) -> None:
    msg = message()
    message_id, (bob, carol) = await spool(store, msg)
    await store.record_links(bob, ["https://example.com/a"])
    await store.record_outcome(bob, DELIVERED, None)
    assert await body_kept(store, message_id)  # carol's copy still needs it
    await store.record_outcome(carol, DELIVERED, None)
    assert not await body_kept(store, message_id)
    assert raw_column(backend, message_id) == (0, "released", len(msg.raw))
    report = await store.message_report(message_id)
    assert report is not None
    assert report.message.subject == "s" and report.message.rcpt_tos == RECIPIENTS
    assert [r.copy.state for r in report.recipients if r.copy] == ["delivered", "delivered"]
    assert [link.url for link in report.recipients[0].links] == ["https://example.com/a"]


async def test_logged_message_keeps_its_body(store: AnyStore, backend: Backend) -> None:
    msg = message(logged=True)
    message_id, copies = await spool(store, msg)
    for copy_id in copies:
        await store.record_outcome(copy_id, DELIVERED, None)
    assert await store.release_bodies() == 0
    assert await store.load_raw(message_id) == msg.raw
    assert raw_column(backend, message_id) == (len(msg.raw), "logged", len(msg.raw))


async def test_deferred_copy_keeps_the_body_until_final(store: AnyStore) -> None:
    msg = message()
    message_id, (bob, carol) = await spool(store, msg)
    await store.record_outcome(bob, DELIVERED, None)
    await store.record_outcome(carol, DEFERRED, T0 + 60)
    assert await store.release_bodies() == 0
    assert await store.load_raw(message_id) == msg.raw  # the retry reads it
    await store.record_outcome(carol, DEFERRED, T0 + 120)
    assert await body_kept(store, message_id)
    await store.record_outcome(carol, DELIVERED, None)
    assert not await body_kept(store, message_id)


async def test_bounce_keeps_the_body_until_the_dsn_is_settled(store: AnyStore) -> None:
    message_id, (bob, carol) = await spool(store, message())
    await store.record_outcome(bob, DELIVERED, None)
    await store.record_outcome(carol, BOUNCED, None)
    assert await store.bounce_state(carol) == "pending"
    assert await body_kept(store, message_id)  # the DSN quotes its headers
    await store.settle_bounce(carol, "pending", "451 later", T0 + 300)
    assert await body_kept(store, message_id)
    await store.settle_bounce(carol, "sent", "250 ok")
    assert not await body_kept(store, message_id)


async def test_null_sender_bounce_needs_no_body(store: AnyStore) -> None:
    message_id, copies = await spool(store, message(mail_from=""))
    for copy_id in copies:
        await store.record_outcome(copy_id, BOUNCED, None)
    assert await store.bounce_state(copies[0]) == "skipped"
    assert not await body_kept(store, message_id)


async def test_deleting_the_last_queued_copy_releases_the_body(store: AnyStore) -> None:
    message_id, (bob, carol) = await spool(store, message())
    await store.record_outcome(bob, DELIVERED, None)
    assert await store.delete_queued([carol]) == 1
    assert not await body_kept(store, message_id)
    assert await store.get_message(message_id) is not None  # bob's copy is still reported


async def test_a_crash_between_final_and_release_leaves_nothing_unreachable(
    backend: Backend,
) -> None:
    """Copies made final without the release (a crash of an older version, or any path
    that forgot to ask): the sweep after reopening finds and releases the body."""
    store = await backend.open()
    message_id, _ = await spool(store, message(size=50_000))
    await store.close()
    backend.run("UPDATE copies SET state = 'delivered'")
    store = await backend.open()
    try:
        assert await body_kept(store, message_id)
        assert await store.release_bodies() == 1
        assert not await body_kept(store, message_id)
    finally:
        await store.close()
    if backend.name != "sqlite":
        return
    with sqlite3.connect(backend.location) as conn:
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        assert free * conn.execute("PRAGMA page_size").fetchone()[0] >= 40_000
    conn.close()


def file_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = int(pages * conn.execute("PRAGMA page_size").fetchone()[0])
    conn.close()
    return size


async def spool_batch(store: AnyStore, n: int, size: int) -> list[int]:
    copies: list[int] = []
    for _ in range(n):
        copies += (await spool(store, message(size=size)))[1]
    return copies


async def test_space_of_released_bodies_is_reused_then_given_back(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    store = sqlite_store
    path = tmp_path / "relay.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
    conn.close()
    waiting = await spool_batch(store, 60, 100_000)  # 6 MB held
    first = file_bytes(path)
    for copy_id in waiting:
        await store.record_outcome(copy_id, DELIVERED, None)
    assert file_bytes(path) == first  # released: free pages, not yet given back
    waiting = await spool_batch(store, 60, 100_000)  # 6 MB more: in the freed pages
    assert file_bytes(path) < first + 1_000_000
    for copy_id in waiting:
        await store.record_outcome(copy_id, DELIVERED, None)
    assert await store.reclaim_space(1_000_000) > 4_000_000  # a reserve is kept
    assert await store.reclaim_space(0) > 0
    assert file_bytes(path) < first / 5


async def test_an_older_store_is_converted_once(tmp_path: Path) -> None:
    """A schema-6 file without auto_vacuum: opening releases finished bodies, VACUUMs it
    to incremental auto-vacuum (smaller), and keeps what is still needed."""
    path = tmp_path / "relay.db"
    with sqlite3.connect(path, isolation_level=None) as conn:
        for step in MIGRATIONS[:6]:
            for statement in step:
                conn.execute(statement)
        conn.execute("PRAGMA user_version=6")
        for i, state in enumerate(["delivered"] * 40 + ["queued"]):
            conn.execute(
                "INSERT INTO messages (id, mail_from, rcpt_tos, received_at, client_addr, sender,"
                " subject, message_id_header, decision, in_reply_to, raw)"
                " VALUES (?, 'a@x', '[]', 1, '', '', '', '', ?, '[]', ?)",
                (f"m{i:03d}", json.dumps({"log_copy": i == 0}), os.urandom(50_000)),
            )
            conn.execute(
                "INSERT INTO copies (message_id, recipient, rcpt_tos, state, next_attempt_at,"
                " created_at) VALUES (?, 'b@y', '[]', ?, 1, 1)",
                (f"m{i:03d}", state),
            )
    conn.close()
    before = file_bytes(path)
    store = await open_sqlite(path)
    try:
        assert await body_kept(store, "m000")  # logged
        assert await body_kept(store, "m040")  # its copy is still queued
        assert not await body_kept(store, "m001")
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)
    conn.close()
    assert file_bytes(path) < before / 5


async def test_links_are_stored_once_per_message(store: AnyStore, backend: Backend) -> None:
    urls = [f"https://example.com/page/{i}" for i in range(18)]
    # What an array literal or a placeholder would trip on (PostgreSQL stores the list as
    # one array): quotes, commas, braces, a backslash, NULL spelled out, a percent sign.
    urls += ['https://example.com/?q="a,b"&x={1}\\n%s', "https://example.com/NULL?p=%25"]
    message_id, (bob, carol) = await spool(store, message())
    await store.record_links(bob, urls)
    await store.record_links(carol, urls)
    await store.record_links(carol, urls)  # a retried copy records the same list again
    assert backend.rows("SELECT count(*) FROM message_links") == [(20,)]
    assert backend.rows("SELECT count(*) FROM links") == [(0,)]
    report = await store.message_report(message_id)
    assert report is not None
    for recipient in report.recipients:
        assert [link.url for link in recipient.links] == urls
    assert [link.url for link in report.links] == urls


async def test_a_copy_with_other_links_keeps_its_own(store: AnyStore) -> None:
    message_id, (bob, carol) = await spool(store, message())
    await store.record_links(bob, ["https://example.com/a", "https://example.com/b"])
    await store.record_links(carol, ["https://example.com/a"])
    report = await store.message_report(message_id)
    assert report is not None
    by_address = {r.address: [link.url for link in r.links] for r in report.recipients}
    assert by_address == {
        "bob@example.net": ["https://example.com/a", "https://example.com/b"],
        "carol@example.org": ["https://example.com/a"],
    }


async def test_links_recorded_with_the_outcome_are_stored_as_record_links_stores_them(
    store: AnyStore, backend: Backend
) -> None:
    """The delivery worker's one write per attempt: outcome and links together."""
    urls = [f"https://example.com/page/{i}" for i in range(5)]
    message_id, (bob, carol) = await spool(store, message())
    await store.record_outcome(bob, DEFERRED, T0 + 60, links=urls)
    await store.record_outcome(bob, DELIVERED, None, links=urls)  # the retry: the same list
    await store.record_outcome(carol, BOUNCED, None, links=urls[:2])  # a list of its own
    assert backend.rows("SELECT count(*) FROM message_links") == [(5,)]
    assert backend.rows("SELECT count(*) FROM links") == [(2,)]
    report = await store.message_report(message_id)
    assert report is not None
    by_address = {r.address: [link.url for link in r.links] for r in report.recipients}
    assert by_address == {"bob@example.net": urls, "carol@example.org": urls[:2]}
    assert {c.id: c.state for c in await store.copies_of(message_id)} == {
        bob: "delivered",
        carol: "bounced",
    }
    assert [b.copy_id for b in await store.due_bounces(4e9, 10)] == [carol]
    assert backend.rows("SELECT body FROM messages") == [("held",)]  # the bounce needs it
    with pytest.raises(ValueError, match="no copy"):
        await store.record_outcome(424242, DELIVERED, None, links=urls)


@pytest.mark.parametrize("waiting", [0, 1])
async def test_oldest_queued(store: AnyStore, waiting: int) -> None:
    _message_id, copies = await spool(store, message())
    for copy_id in copies[waiting:]:
        await store.record_outcome(copy_id, DELIVERED, None)
    assert await store.oldest_queued() == (T0 if waiting else None)


async def test_load_message_reads_the_message_and_its_body_together(store: AnyStore) -> None:
    message_id, (bob, carol) = await spool(store, message())
    loaded = await store.load_message(message_id)
    assert loaded is not None
    found, raw = loaded
    assert found == await store.get_message(message_id)
    assert raw == await store.load_raw(message_id)
    assert await store.load_message("no-such-message") is None
    for copy_id in (bob, carol):
        await store.record_outcome(copy_id, DELIVERED, None)
    assert await store.load_message(message_id) is None  # released: as load_raw's KeyError
