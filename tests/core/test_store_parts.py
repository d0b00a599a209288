"""A shared copy split by outcome (record_parts), and schema step 6 on an existing store."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from support.messages import SHARED, spool
from support.stores import open_sqlite

from relay.core.models import CopyPart, DeliveryOutcome
from relay.core.store import Store
from relay.core.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION

A, B, C = "a@example.net", "b@example.net", "c@example.net"


async def test_parts_become_copies_with_their_own_outcomes(store: Store) -> None:
    message_id = (await spool(store, (A, B, C), decision=SHARED)).message_id
    [copy] = await store.copies_of(message_id)
    retry = time.time() + 60
    ids = await store.record_parts(
        copy.id,
        [
            CopyPart((A,), DeliveryOutcome("delivered", "250 ok", "Q9"), None),
            CopyPart((B,), DeliveryOutcome("temporary", "450 busy"), retry),
            CopyPart((C,), DeliveryOutcome("permanent", "550 gone"), None, {C: "550 gone"}),
        ],
        "a note",
    )
    assert ids[0] == copy.id and len(set(ids)) == 3
    found = {c.id: c for c in await store.copies_of(message_id)}
    kept, deferred, bounced = (found[i] for i in ids)
    assert (kept.rcpt_tos, kept.state, kept.queue_id, kept.attempts) == ((A,), "delivered", "Q9", 1)
    assert kept.rewrite_note == "a note" and deferred.rewrite_note == ""
    assert (deferred.rcpt_tos, deferred.state, deferred.attempts) == ((B,), "deferred", 1)
    assert deferred.next_attempt_at == retry and deferred.recipient is None
    assert [c.id for c in await store.due_copies(retry, 10)] == [deferred.id]
    assert (bounced.state, bounced.replies) == ("bounced", {C: "550 gone"})
    assert await store.bounce_state(bounced.id) == "pending"
    assert await store.bounce_state(kept.id) is None
    # The next attempt's outcome is everyone's again: the own replies go.
    await store.record_outcome(deferred.id, DeliveryOutcome("delivered", "250 later"), None)
    assert (await store.copies_of(message_id))[1].replies == {}
    report = await store.message_report(message_id)
    assert report is not None
    states = {r.address: (r.copy.state, r.copy.last_reply) for r in report.recipients if r.copy}
    assert states == {
        A: ("delivered", "250 ok"),
        B: ("delivered", "250 later"),
        C: ("bounced", "550 gone"),
    }
    erased = await store.erase_recipient(C)
    assert erased["copies"] == 1
    assert (await store.get_copy(bounced.id)).replies == {}  # type: ignore[union-attr]


async def test_an_existing_store_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    before = 5  # the version before step 6 added rcpt_replies
    with sqlite3.connect(path, isolation_level=None) as conn:
        for step in MIGRATIONS[:before]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={before}")
        conn.execute(
            "INSERT INTO messages (id, mail_from, rcpt_tos, received_at, client_addr, sender,"
            " subject, message_id_header, decision, in_reply_to, raw)"
            " VALUES ('m1', 'a@x', ?, 1, '', '', '', '', ?, '[]', x'00')",
            (json.dumps([A, B]), json.dumps({"opens": True, "clicks": True})),
        )
        conn.execute(
            "INSERT INTO copies (message_id, recipient, rcpt_tos, state, next_attempt_at,"
            " last_reply, created_at) VALUES ('m1', NULL, ?, 'delivered', 1, '250 ok', 1)",
            (json.dumps([A, B]),),
        )
    conn.close()
    store = await open_sqlite(path)
    try:
        [copy] = await store.copies_of("m1")
        assert (copy.rcpt_tos, copy.last_reply, copy.replies) == ((A, B), "250 ok", {})
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
