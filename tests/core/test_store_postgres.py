"""The PostgreSQL backend's own machinery: the SQL adapter, the schema and its versions,
several processes on one database, lost connections, retried batches.

The Store protocol's behaviour is tested on both engines by the other test_store*
modules; these tests are about what only PostgreSQL has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest
from support.messages import BOB, CAROL, new_message, spool, spool_one
from support.stores import open_postgres

from relay.core.models import CopySpec, DeliveryOutcome, Event
from relay.core.store import StoreUnavailable
from relay.core.store.batching import WriteItem
from relay.core.store.postgres import PostgresStore, migrate_database, schema
from relay.core.store.postgres.connection import Connection, redact_url, translate
from relay.core.store.postgres.writer import LANES, commit_items
from relay.core.store.sql import queue
from relay.core.store.sql.dialect import number_array, text_array
from relay.core.store.sql.writes import LINKS_LOCK
from relay.core.store.sqlite import schema as sqlite_schema


def an_open(copy_id: int, message_id: str, at: float | None = None) -> Event:
    return Event("open", copy_id, message_id, BOB, at or time.time(), "192.0.2.1", "UA")


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


# --- the adapter ---------------------------------------------------------------


def test_sqlite_style_sql_is_translated_once_outside_literals() -> None:
    sql = "SELECT '?', \"a?\", x FROM t WHERE a = ? AND b LIKE '50%' -- why?\n AND c = ?"
    assert translate(sql) == (
        "SELECT '?', \"a?\", x FROM t WHERE a = %s AND b LIKE '50%%' -- why?\n AND c = %s"
    )
    assert translate("SELECT 'it''s ?' || ?") == "SELECT 'it''s ?' || %s"
    assert translate("SELECT 7 % 3") == "SELECT 7 %% 3"
    assert translate("BEGIN IMMEDIATE") == "BEGIN"
    assert translate(sql) is translate(sql)  # cached


def test_a_password_never_shows() -> None:
    assert redact_url("postgresql://relay:s3cret@db.example.com:5433/relay") == (
        "postgresql://relay:***@db.example.com:5433/relay"
    )
    assert redact_url("postgresql://relay@db/relay") == "postgresql://relay@db/relay"


async def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    store = PostgresStore("postgresql://relay:s3cret@127.0.0.1:1/relay")
    with pytest.raises(StoreUnavailable) as refused:
        await store.open()
    message = str(refused.value)
    assert "s3cret" not in message and "127.0.0.1" in message
    with pytest.raises(StoreUnavailable):
        migrate_database("postgresql://relay:s3cret@127.0.0.1:1/relay")
    with pytest.raises(StoreUnavailable):
        await store.ping()


# --- schema and versions -------------------------------------------------------


def test_both_engines_are_at_the_same_schema_version() -> None:
    """A step appended to one engine's MIGRATIONS must be appended to the other's."""
    assert schema.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION


def test_the_schema_has_every_table_column_and_index_of_sqlites(
    postgres_url: str, tmp_path: Path
) -> None:
    migrate_database(postgres_url)
    lite = sqlite3.connect(tmp_path / "relay.db", isolation_level=None)
    sqlite_schema.migrate(lite)
    tables = [
        name
        for (name,) in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    expected = {
        (table, row[1]) for table in tables for row in lite.execute(f"PRAGMA table_info({table})")
    }
    indexes = {
        name
        for (name,) in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )
    }
    lite.close()
    found = set(
        query(
            postgres_url,
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND table_name != 'schema_version'",
        )
    )
    assert found - {("event_hours", "shard")} == expected
    pg_indexes = {name for (name,) in query(postgres_url, "SELECT indexname FROM pg_indexes")}
    assert indexes <= pg_indexes


def test_migrating_twice_changes_nothing_the_second_time(postgres_url: str) -> None:
    assert migrate_database(postgres_url) == (0, schema.SCHEMA_VERSION)
    tables = query(postgres_url, "SELECT count(*) FROM information_schema.tables")
    assert migrate_database(postgres_url) == (schema.SCHEMA_VERSION, schema.SCHEMA_VERSION)
    assert query(postgres_url, "SELECT count(*) FROM information_schema.tables") == tables
    assert query(postgres_url, "SELECT version FROM schema_version") == [(schema.SCHEMA_VERSION,)]


def test_nodes_migrating_at_once_take_turns(postgres_url: str) -> None:
    results: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            results.append(migrate_database(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    version = schema.SCHEMA_VERSION
    assert sorted(results) == [(0, version)] + [(version, version)] * 3


async def test_an_unmigrated_database_is_refused_with_one_line(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable, match="run `relay migrate`") as refused:
        await store.open()
    assert "\n" not in str(refused.value)
    assert query(postgres_url, "SELECT to_regclass('messages')") == [(None,)]  # untouched


async def test_a_newer_schema_is_refused_with_one_line(postgres_url: str) -> None:
    migrate_database(postgres_url)
    newer = schema.SCHEMA_VERSION + 1
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (newer,))
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable) as refused:
        await store.open()
    assert str(refused.value) == (
        f"the database has schema version {newer}, newer than this relay's "
        f"{schema.SCHEMA_VERSION}: upgrade the relay"
    )
    with pytest.raises(StoreUnavailable, match="newer"):
        migrate_database(postgres_url)  # never downgraded either


async def test_an_older_schema_is_refused_until_migrated(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate_database(postgres_url)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", schema.SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, ("SELECT 1",)))
    store = PostgresStore(postgres_url)
    with pytest.raises(StoreUnavailable, match=r"older than this relay's .*: run `relay migrate`"):
        await store.open()
    assert migrate_database(postgres_url) == (schema.SCHEMA_VERSION - 1, schema.SCHEMA_VERSION)
    store = PostgresStore(postgres_url)
    await store.open()
    await store.ping()
    await store.close()


async def test_a_queue_spooled_at_version_9_is_delivered_after_migrating(
    postgres_url: str,
) -> None:
    """Step 10 only adds the outcome function: a store at version 9 (a queue spooled by
    the previous relay) migrates in place, and its copies' outcomes are recorded."""
    migrate_database(postgres_url)
    store = await open_postgres(postgres_url)
    spooled = await spool(store, (BOB,))
    await store.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # as the last relay left it
        conn.execute("DROP FUNCTION relay_outcome")
        conn.execute("UPDATE schema_version SET version = 9")
    assert migrate_database(postgres_url) == (9, schema.SCHEMA_VERSION)
    store = await open_postgres(postgres_url)
    try:
        links = ["https://example.com/a", "https://example.com/b"]
        delivered = DeliveryOutcome("delivered", "250 2.0.0 Ok", queue_id="Q1")
        await store.record_outcome(spooled[BOB].id, delivered, None, links=links)
        copy = await store.get_copy(spooled[BOB].id)
        assert copy is not None
        assert (copy.state, copy.queue_id, copy.attempts) == ("delivered", "Q1", 1)
        report = await store.message_report(spooled.message_id)
        assert report is not None
        assert [link.url for link in report.recipients[0].links] == links
    finally:
        await store.close()


async def test_outcomes_find_a_new_databases_links_by_index(postgres_url: str) -> None:
    """The outcome function's plans are made while message_links is empty and kept for
    the session: each must still use an index, not scan the table for every copy."""
    migrate_database(postgres_url)
    store = await open_postgres(postgres_url)
    links = [f"https://example.com/{i}" for i in range(20)]
    delivered = DeliveryOutcome("delivered", "250 2.0.0 Ok")
    try:
        for _ in range(30):
            spooled = await spool(store, (BOB, CAROL))
            for rcpt in (BOB, CAROL):
                await store.record_outcome(spooled[rcpt].id, delivered, None, links=links)
    finally:
        await store.close()  # a session's table statistics are flushed when it ends
    stats = "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relname = 'message_links'"
    deadline = time.monotonic() + 10
    while (scans := query(postgres_url, stats)[0])[1] in (None, 0):
        assert time.monotonic() < deadline, "no statistics of message_links"
        await asyncio.sleep(0.1)
    seq_scans, index_scans = scans
    assert isinstance(index_scans, int) and index_scans >= 5 * 30  # five lookups a message
    # One is the migration's, before any outcome; with plans kept as made there were 91.
    assert isinstance(seq_scans, int) and seq_scans <= 1, scans


# --- several processes on one database -------------------------------------------


async def test_two_nodes_share_the_database(postgres_url: str) -> None:
    """Events written by two stores at once (two processes, two nodes): all kept, ids
    unique, the rollup (one shard per server process) summed right, one first secret."""
    first, second = await open_postgres(postgres_url), PostgresStore(postgres_url)
    await second.open()
    try:
        keys = await asyncio.gather(first.secrets(), second.secrets())
        assert keys[0] == keys[1] and len(keys[0]) == 1
        message_id, copy_id = await spool_one(first)
        hour = (time.time() // 3600 - 1) * 3600
        ids = await asyncio.gather(
            *(
                node.record_hit(an_open(copy_id, message_id, hour + i))
                for i in range(200)
                for node in (first, second)
            )
        )
        assert len({event.id for [event] in ids}) == 400
        shards = query(postgres_url, "SELECT count(DISTINCT shard) FROM event_hours")
        assert shards[0][0] >= 1
        [bucket] = await second.event_histogram(hour, hour + 3600, 3600)
        assert (bucket.kind, bucket.klass, bucket.count) == ("open", "human", 400)
    finally:
        await first.close()
        await second.close()


async def test_the_webhook_queue_loses_nothing_to_concurrent_writers(postgres_url: str) -> None:
    from relay.core.models import WebhookTarget

    first, second = await open_postgres(postgres_url), PostgresStore(postgres_url)
    await second.open()
    try:
        message_id, copy_id = await spool_one(first)
        target = WebhookTarget("https://hooks.example.com/", ("open",))
        written = asyncio.Event()

        async def fan_out() -> int:  # meanwhile, a little at a time, as a dispatcher does
            consumed = 0
            while (n := await second.queue_webhooks([target], limit=7)) or not written.is_set():
                consumed += n
                await asyncio.sleep(0.001)
            return consumed

        fanning = asyncio.create_task(fan_out())
        await asyncio.gather(
            *(node.record_event(an_open(copy_id, message_id)) for node in (first, second) * 100)
        )
        written.set()
        assert await fanning == 200
        assert await first.webhook_backlog() == {"queued": 0, "pending": 200, "failed": 0}
    finally:
        await first.close()
        await second.close()


async def test_copies_of_one_message_record_their_links_at_once(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer (a lane, a process, a node) is storing the message's shared links and
    has not committed: this store's copies wait for it, then point at its list when they
    have the same, or keep their own; no batch fails on the key and runs again."""
    store = await open_postgres(postgres_url)
    try:
        spooled = await spool(store, (BOB, CAROL))
        mine = [f"https://example.com/{i}" for i in range(19)]
        other = [*mine, "https://example.com/one-more"]  # longer: none of it may join mine
        blocker = psycopg.connect(postgres_url, autocommit=True)
        blocker.execute("BEGIN")  # another writer storing the list, as store_links does
        blocker.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LINKS_LOCK, spooled.message_id)
        )
        blocker.execute(
            "INSERT INTO message_links (message_id, idx, url)"
            " SELECT %s, n - 1, url FROM unnest(%s::text[]) WITH ORDINALITY AS u(url, n)",
            (spooled.message_id, mine),
        )
        caplog.set_level(logging.DEBUG, logger="relay.core.store.postgres.writer")
        delivered = DeliveryOutcome("delivered", "250 2.0.0 Ok")
        writes = asyncio.gather(
            store.record_outcome(spooled[BOB].id, delivered, None, links=mine),
            store.record_outcome(spooled[CAROL].id, delivered, None, links=other),
        )
        await asyncio.sleep(0.3)  # both wait for the other writer's COMMIT
        blocker.execute("COMMIT")
        blocker.close()
        await writes
        assert not [r for r in caplog.records if "failed" in r.getMessage()]
        assert query(postgres_url, "SELECT count(*) FROM message_links") == [(19,)]
        shared = query(postgres_url, "SELECT id, links_shared FROM copies ORDER BY id")
        assert shared == [(spooled[BOB].id, 1), (spooled[CAROL].id, 0)]
        report = await store.message_report(spooled.message_id)
        assert report is not None
        links = {r.address: [link.url for link in r.links] for r in report.recipients}
        assert links == {BOB: mine, CAROL: other}
    finally:
        await store.close()


def test_a_text_array_literal_reads_back_as_the_values_it_was_made_of(postgres_url: str) -> None:
    """dialect.text_array and number_array (the links' lists and the hits' columns,
    formatted here instead of by psycopg)."""
    tricky = ["", " ", "NULL", "null", "a,b", "{x}", '"', '\\', '\\"', "'", "%s", "?", "é✓",
              "tab\there", "new\nline", "https://example.com/?q=\"a,b\"&x={1}\\n%25"]  # fmt: skip
    rng = random.Random(13)
    alphabet = "\"\\{},; NUL'\t\nxé"
    fuzzed = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(300)]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for values in ([], tricky, fuzzed, ["only one"], [None, "x", None]):
            [(back,)] = conn.execute("SELECT %s::text[]", (text_array(values),)).fetchall()
            assert back == values
        times = [1_700_000_000.123456, 0.1, 1e-7, 2.5e15, rng.random() * 2e9]
        [(read,)] = conn.execute("SELECT %s::float8[]", (number_array(times),)).fetchall()
        assert read == times  # the same floats, bit for bit
        ids = [1, None, 2**62, 0]
        [(read,)] = conn.execute("SELECT %s::bigint[]", (number_array(ids),)).fetchall()
        assert read == ids


# --- failures ------------------------------------------------------------------


async def test_a_lost_connection_fails_a_batch_and_the_next_one_connects_again(
    postgres_url: str,
) -> None:
    store = await open_postgres(postgres_url)
    try:
        message_id, copy_id = await spool_one(store)
        for _ in range(4):
            await store.ping()  # every read connection is made
        killed = query(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'mail-tracking-relay'",
        )
        assert len(killed) >= 2
        outcomes = []
        for _ in range(2 * LANES):  # the lanes take batches in turn
            try:
                await store.record_event(an_open(copy_id, message_id))
                outcomes.append("stored")
            except StoreUnavailable:  # a batch that found its lane's connection gone
                outcomes.append("failed")
        assert outcomes[LANES:] == ["stored"] * LANES  # each lane connected again
        for _ in range(8):
            await store.ping()  # a read finding its connection gone is run again on a new one
        assert len(await store.list_events()) == outcomes.count("stored")
    finally:
        await store.close()


def test_a_deadlocked_batch_is_run_again_op_by_op(postgres_url: str) -> None:
    migrate_database(postgres_url)
    conn = Connection.connect(postgres_url)
    calls = {"n": 0}

    def deadlocks_once(c: Connection) -> str:
        calls["n"] += 1
        c.execute("INSERT INTO settings (name, value) VALUES ('a', '1')")
        if calls["n"] == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return "ok"

    def fine(c: Connection) -> str:
        c.execute("INSERT INTO settings (name, value) VALUES ('b', '2')")
        return "fine"

    items = [WriteItem(fine, False), WriteItem(deadlocks_once, False)]
    results, commits = commit_items(conn, items)  # the batch, then each op alone
    assert results == [(True, "fine"), (True, "ok")] and commits == 2 and calls["n"] == 2
    rows = query(postgres_url, "SELECT name FROM settings WHERE name IN ('a', 'b') ORDER BY 1")
    assert rows == [("a",), ("b",)]
    conn.close()


def test_an_op_whose_failure_shows_only_later_in_the_pipeline_fails_alone(
    postgres_url: str,
) -> None:
    """In pipeline mode a statement nobody reads fails at the next read, or at COMMIT:
    still only its own op fails, and the others are stored."""
    migrate_database(postgres_url)
    conn = Connection.connect(postgres_url)

    def setting(name: str) -> WriteItem:
        def op(c: Connection) -> str:
            c.execute("INSERT INTO settings (name, value) VALUES (?, 'x')", (name,))
            return name

        return WriteItem(op, False)

    def reads(c: Connection) -> int:
        return len(c.execute("SELECT name FROM settings").fetchall())

    for batch, failing in (
        (["p", "p", "q"], 1),  # found by the next op's statements: the read of "reads"
        (["r", "s", "r"], 2),  # unread to the end: found at COMMIT
    ):
        items = [setting(name) for name in batch]
        items.insert(2, WriteItem(reads, False))
        results, commits = commit_items(conn, items)
        assert commits == 1
        oks = [ok for ok, _ in results]
        expected = [True] * 4
        expected[failing if failing < 2 else failing + 1] = False
        assert oks == expected, results
        assert isinstance(results[failing if failing < 2 else 3][1], ValueError)
    rows = query(postgres_url, "SELECT name FROM settings WHERE name IN ('p', 'q', 'r', 's')")
    assert sorted(row[0] for row in rows) == ["p", "q", "r", "s"]
    assert not conn.in_transaction
    conn.close()


async def test_outcomes_of_a_batch_run_again_op_by_op_are_the_same_writes(
    postgres_url: str,
) -> None:
    """A batch with a failing op runs again op by op, out of pipeline mode: its outcomes
    go through the same function (links, state, the body's release) and an outcome for a
    copy that does not exist fails alone."""
    migrate_database(postgres_url)
    store = await open_postgres(postgres_url)
    try:
        spooled = await spool(store, (BOB,))
    finally:
        await store.close()
    conn = Connection.connect(postgres_url)
    links = ["https://example.com/a", "https://example.com/b"]
    delivered = DeliveryOutcome("delivered", "250 2.0.0 Ok", queue_id="Q9")

    def outcome(copy_id: int) -> WriteItem:
        return WriteItem(
            lambda c: queue.record_outcome(c, copy_id, delivered, None, "", links), False
        )

    def duplicate(c: Connection) -> None:
        c.execute("INSERT INTO settings (name, value) VALUES ('dup', '1')")
        c.execute("INSERT INTO settings (name, value) VALUES ('dup', '2')")

    items = [outcome(spooled[BOB].id), WriteItem(duplicate, False), outcome(10**12)]
    results, commits = commit_items(conn, items)
    conn.close()
    assert [ok for ok, _ in results] == [True, False, False] and commits == 1
    assert isinstance(results[2][1], ValueError) and "no copy" in str(results[2][1])
    state = "SELECT state, queue_id, links_shared FROM copies WHERE id = %s"
    assert query(postgres_url, state, spooled[BOB].id) == [("delivered", "Q9", 1)]
    listed = "SELECT url FROM message_links WHERE message_id = %s ORDER BY idx"
    assert [row[0] for row in query(postgres_url, listed, spooled.message_id)] == links
    body = "SELECT body FROM messages WHERE id = %s"
    assert query(postgres_url, body, spooled.message_id) == [("released",)]


async def test_a_held_lock_costs_the_hit_timeout_not_the_hit(postgres_url: str) -> None:
    migrate_database(postgres_url)
    store = PostgresStore(postgres_url, hit_timeout=0.3)
    await store.open()
    try:
        message_id, copy_id = await spool_one(store)
        blocker = psycopg.connect(postgres_url, autocommit=True)
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await store.record_hit(an_open(copy_id, message_id))
        assert time.monotonic() - started < 2.0
        blocker.execute("COMMIT")
        blocker.close()
        for _ in range(200):  # the writer goes on once the lock is gone
            if await store.list_events():
                break
            await asyncio.sleep(0.05)
        assert len(await store.list_events()) == 1  # committed after all
    finally:
        await store.close()


async def test_text_postgres_cannot_hold_is_stored_as_sqlite_stores_it(postgres_url: str) -> None:
    store = await open_postgres(postgres_url)
    try:
        msg = new_message((BOB,), subject="a\x00b caf\udce9")
        message_id = await store.spool(msg, [CopySpec(BOB, (BOB,))])
        stored = await store.get_message(message_id)
        assert stored is not None and stored.subject == "a\ufffdb caf\ufffd"
        assert await store.reclaim_space(0) == 0  # autovacuum's job on PostgreSQL
    finally:
        await store.close()


async def test_a_reader_paging_by_id_misses_no_event_of_concurrent_nodes(
    postgres_url: str,
) -> None:
    """Ids follow commits (the events_in_order lock), so `since=` paging skips nothing."""
    migrate_database(postgres_url)
    nodes = [await open_postgres(postgres_url) for _ in range(3)]
    try:
        message_id, copy_id = await spool_one(nodes[0])
        seen: set[int] = set()
        checkpoint = 0
        writing = True

        async def write(store: PostgresStore) -> None:
            for _ in range(20):
                await asyncio.gather(
                    *(store.record_event(an_open(copy_id, message_id)) for _ in range(15))
                )

        async def read() -> None:
            nonlocal checkpoint
            while writing:
                page = await nodes[0].list_events(since_id=checkpoint)
                seen.update(e.id for e in page if e.id is not None)
                checkpoint = max([checkpoint, *(e.id or 0 for e in page)])
                await asyncio.sleep(0)

        reader = asyncio.create_task(read())
        await asyncio.gather(*(write(store) for store in nodes))
        writing = False
        await reader
        for page in [await nodes[0].list_events(since_id=checkpoint)]:
            seen.update(e.id for e in page if e.id is not None)
        stored = {e.id for e in await nodes[1].list_events(limit=1000)}
        assert len(stored) == 900 and seen == stored
    finally:
        for store in nodes:
            await store.close()


# --- the event writer process ------------------------------------------------------


async def test_hits_go_through_an_event_writer_process_that_may_die(postgres_url: str) -> None:
    """relay http's store (events_process): hits are committed by a process of their
    own, whose URL (password and all) never shows on its command line; when it is
    killed, the hits in flight go through the store's own writer and none is lost."""
    migrate_database(postgres_url)
    store = PostgresStore(postgres_url, events_process=True)
    await store.open()
    try:
        message_id, copy_id = await spool_one(store)
        pid = store.events_pid
        assert pid is not None
        cmdline = await asyncio.to_thread(Path(f"/proc/{pid}/cmdline").read_text)
        assert postgres_url not in cmdline
        async with asyncio.timeout(30):
            results = await asyncio.gather(
                *(store.record_hit(an_open(copy_id, message_id)) for _ in range(200))
            )
            click = Event("click", copy_id, message_id, None, time.time(), "192.0.2.9", "UA")
            clicked = await store.record_hit(click, relabel_client=True)
            with pytest.raises(ValueError, match=r"no such copy|no copy"):
                await store.record_hit(an_open(999_999, message_id))
            mixed = await asyncio.gather(  # in the same batches: each fails or not alone
                *(store.record_hit(an_open(copy_id, message_id)) for _ in range(20)),
                store.record_hit(an_open(999_999, message_id)),
                store.record_hit(click),
                *(store.record_hit(an_open(copy_id, message_id)) for _ in range(20)),
                return_exceptions=True,
            )
        assert [type(r).__name__ for r in mixed].count("ValueError") == 1
        assert isinstance(mixed[20], ValueError)
        kinds = [r[0].kind for r in mixed if isinstance(r, list)]  # each answer is its own hit's
        assert kinds == ["open"] * 20 + ["click"] + ["open"] * 20
        ids = [r[0].id for r in mixed if isinstance(r, list)]
        assert len(set(ids)) == 41 and ids[:20] == sorted(ids[:20])  # stored in their order
        results += [r for r in mixed if isinstance(r, list)]
        assert [e.kind for e in clicked] == ["click"]  # a human open came before it
        assert all(events[0].recipient == BOB for events in results)
        assert store.transactions <= 2  # the spool; the process wrote the events
        in_flight = [
            asyncio.create_task(store.record_hit(an_open(copy_id, message_id))) for _ in range(50)
        ]
        await asyncio.sleep(0)
        os.kill(pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            answered = await asyncio.gather(*in_flight)
        ids = {e.id for events in [*results, clicked, *answered] for e in events}
        stored = {e.id for e in await store.list_events(limit=1000)}
        assert ids <= stored and None not in ids
    finally:
        await store.close()
