"""SQLite schema and migrations, versioned with PRAGMA user_version.

MIGRATIONS[i] takes a database from version i to i + 1. Append to the list,
never edit a shipped entry: a relay upgraded in place migrates on open.
"""

from __future__ import annotations

import sqlite3

from relay.core.store.base import StoreUnavailable

_V1 = (
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        mail_from TEXT NOT NULL,
        rcpt_tos TEXT NOT NULL,
        received_at REAL NOT NULL,
        client_addr TEXT NOT NULL,
        auth_user TEXT,
        sender TEXT NOT NULL,
        subject TEXT NOT NULL,
        message_id_header TEXT NOT NULL,
        decision TEXT NOT NULL,
        in_reply_to TEXT NOT NULL,
        raw BLOB NOT NULL  -- last: reading the other columns never walks its overflow pages
    )""",
    # AUTOINCREMENT: a copy id is signed into tokens that never expire, so an id
    # must never be reused, even after old rows are deleted by retention.
    """CREATE TABLE copies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        recipient TEXT,
        rcpt_tos TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_reply TEXT NOT NULL DEFAULT '',
        queue_id TEXT NOT NULL DEFAULT '',
        delivered_at REAL,
        rewrite_note TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX copies_by_message ON copies(message_id)",
    """CREATE INDEX copies_due ON copies(next_attempt_at, id)
        WHERE state IN ('queued', 'deferred')""",
    "CREATE INDEX copies_by_recipient ON copies(recipient)",
    """CREATE TABLE links (
        copy_id INTEGER NOT NULL REFERENCES copies(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (copy_id, idx)
    ) WITHOUT ROWID""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        copy_id INTEGER NOT NULL REFERENCES copies(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        recipient TEXT,
        at REAL NOT NULL,
        ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        klass TEXT NOT NULL,
        reasons TEXT NOT NULL,
        url TEXT NOT NULL,
        link_index INTEGER,
        inferred INTEGER NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}'
    )""",
    # Covering index for the per-message report and the list counts.
    """CREATE INDEX events_by_message
        ON events(message_id, kind, copy_id, klass, inferred, at, link_index)""",
    "CREATE INDEX events_by_copy ON events(copy_id)",
    "CREATE INDEX events_by_recipient ON events(recipient, id)",
    "CREATE INDEX events_by_kind ON events(kind, id)",
    """CREATE TABLE secrets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    )""",
)

# Steps reserved while the issues that need them are built in parallel; an
# empty step only moves the version on. Fill your own step, never another's.
_V2_DELIVERY: tuple[str, ...] = (  # queue, bounces, back-pressure
    # One row per bounced copy, written in the transaction that bounces it: the
    # durable to-do of the DSN sender (state pending -> sent | failed; skipped for
    # a null sender), and the record a webhook reads for the "bounce" event.
    """CREATE TABLE bounces (
        copy_id INTEGER PRIMARY KEY REFERENCES copies(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_reply TEXT NOT NULL DEFAULT '',
        sent_at REAL
    )""",
    "CREATE INDEX bounces_due ON bounces(next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX bounces_by_message ON bounces(message_id)",
    # Queue depth by state for /metrics, without walking the copies table.
    "CREATE INDEX copies_by_state ON copies(state)",
)
_V3_CLASSIFY: tuple[str, ...] = (  # classification, replies, privacy, logged copies
    "CREATE INDEX messages_by_header ON messages(message_id_header)",  # replies
    "CREATE INDEX messages_by_time ON messages(received_at)",  # retention (events: _V4's by_time)
    "CREATE INDEX events_by_client ON events(message_id, ip, user_agent)",  # honeypot
)
_V4_WEB: tuple[str, ...] = (  # webhooks outbox, dashboard sessions
    # Dashboard: the messages list filtered by sender, the charts over time.
    "CREATE INDEX messages_by_sender ON messages(sender, id)",
    "CREATE INDEX events_by_time ON events(at, kind, klass, inferred)",
    # Webhooks: triggers queue every event and delivery outcome in the statement that
    # records it (durable with it, whoever writes it); the HTTP role's dispatcher fans
    # the queue out into one outbox row per matching endpoint (store/sql/outbox.py).
    """CREATE TABLE webhook_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        event_id INTEGER,
        copy_id INTEGER NOT NULL,
        at REAL NOT NULL
    )""",
    """CREATE TRIGGER webhook_queue_events AFTER INSERT ON events BEGIN
        INSERT INTO webhook_queue (kind, event_id, copy_id, at)
        VALUES (NEW.kind, NEW.id, NEW.copy_id, NEW.at);
    END""",
    """CREATE TRIGGER webhook_queue_outcomes AFTER UPDATE OF state, attempts ON copies
        WHEN NEW.state IN ('delivered', 'deferred', 'bounced')
        AND (NEW.state IS NOT OLD.state OR NEW.attempts IS NOT OLD.attempts)
    BEGIN
        INSERT INTO webhook_queue (kind, event_id, copy_id, at)
        VALUES (CASE NEW.state WHEN 'bounced' THEN 'bounce' ELSE NEW.state END, NULL, NEW.id,
                (julianday('now') - 2440587.5) * 86400.0);
    END""",
    """CREATE TABLE webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id TEXT NOT NULL UNIQUE,
        endpoint TEXT NOT NULL,
        notice TEXT NOT NULL,
        created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at, id)
        WHERE state = 'pending'""",
    # Charts: events per hour, kind and class (inferred counts as human), kept by triggers
    # in the statement that changes events (inserts, relabelling, erasure, retention), so
    # a 14-day chart reads a few hundred rows instead of counting every event
    # (store/sql/rollup.py). Hours are whole since the epoch (UTC). The class counted is
    # store/sql/classes.py's COUNTED_CLASS, spelled out: a shipped step never changes, so
    # a new definition would take a step of its own that replaces these triggers.
    """CREATE TABLE event_hours (
        hour INTEGER NOT NULL,
        kind TEXT NOT NULL,
        klass TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (hour, kind, klass)
    ) WITHOUT ROWID""",
    """INSERT INTO event_hours (hour, kind, klass, n)
        SELECT CAST(at / 3600 AS INTEGER), kind,
               CASE WHEN inferred THEN 'human' ELSE klass END, count(*)
        FROM events GROUP BY 1, 2, 3""",
    """CREATE TRIGGER event_hours_insert AFTER INSERT ON events BEGIN
        INSERT INTO event_hours (hour, kind, klass, n)
        VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.kind,
                CASE WHEN NEW.inferred THEN 'human' ELSE NEW.klass END, 1)
        ON CONFLICT (hour, kind, klass) DO UPDATE SET n = n + 1;
    END""",
    """CREATE TRIGGER event_hours_delete AFTER DELETE ON events BEGIN
        UPDATE event_hours SET n = n - 1
        WHERE hour = CAST(OLD.at / 3600 AS INTEGER) AND kind = OLD.kind
          AND klass = CASE WHEN OLD.inferred THEN 'human' ELSE OLD.klass END;
    END""",
    """CREATE TRIGGER event_hours_update AFTER UPDATE OF at, kind, klass, inferred ON events
    BEGIN
        UPDATE event_hours SET n = n - 1
        WHERE hour = CAST(OLD.at / 3600 AS INTEGER) AND kind = OLD.kind
          AND klass = CASE WHEN OLD.inferred THEN 'human' ELSE OLD.klass END;
        INSERT INTO event_hours (hour, kind, klass, n)
        VALUES (CAST(NEW.at / 3600 AS INTEGER), NEW.kind,
                CASE WHEN NEW.inferred THEN 'human' ELSE NEW.klass END, 1)
        ON CONFLICT (hour, kind, klass) DO UPDATE SET n = n + 1;
    END""",
)

_WEBHOOKS_WANTED = "(SELECT value FROM settings WHERE name = 'webhooks') = 'on'"
_V5_QUIET: tuple[str, ...] = (  # no work for webhooks when none is configured
    # Settings the processes sharing the store tell each other. ``webhooks``: whether
    # an HTTP role with endpoints runs; each one sets it when it starts
    # (store/sql/outbox.py want_webhooks), and the queue triggers fire only when it is
    # 'on', so a relay without webhooks writes no queue row per event or outcome.
    # 'on' until then: an upgraded relay queues as before.
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "INSERT INTO settings (name, value) VALUES ('webhooks', 'on')",
    "DROP TRIGGER webhook_queue_events",
    f"""CREATE TRIGGER webhook_queue_events AFTER INSERT ON events WHEN {_WEBHOOKS_WANTED}
    BEGIN
        INSERT INTO webhook_queue (kind, event_id, copy_id, at)
        VALUES (NEW.kind, NEW.id, NEW.copy_id, NEW.at);
    END""",
    "DROP TRIGGER webhook_queue_outcomes",
    f"""CREATE TRIGGER webhook_queue_outcomes AFTER UPDATE OF state, attempts ON copies
        WHEN NEW.state IN ('delivered', 'deferred', 'bounced')
        AND (NEW.state IS NOT OLD.state OR NEW.attempts IS NOT OLD.attempts)
        AND {_WEBHOOKS_WANTED}
    BEGIN
        INSERT INTO webhook_queue (kind, event_id, copy_id, at)
        VALUES (CASE NEW.state WHEN 'bounced' THEN 'bounce' ELSE NEW.state END, NULL, NEW.id,
                (julianday('now') - 2440587.5) * 86400.0);
    END""",
)

_V6_RECIPIENT_OUTCOMES: tuple[str, ...] = (  # per-recipient outcomes of a shared copy
    # A shared copy whose recipients the upstream answered differently is split into
    # copies by outcome (store/sql/queue.py record_parts); this keeps each recipient's own
    # reply ({"address": "reply"}) where one copy's recipients were answered apart.
    # Existing copies get '{}': their last_reply is every recipient's.
    "ALTER TABLE copies ADD COLUMN rcpt_replies TEXT NOT NULL DEFAULT '{}'",
)

_V7_LEAN_STORE: tuple[str, ...] = (  # bodies only while needed, links once per message
    # A message's raw body is kept while a copy waits for delivery or a bounce waits to
    # be sent ('held'), until retention when the message is logged ('logged'); otherwise
    # it is emptied ('released', store/sql/bodies.py) and only size remains. Existing rows
    # start 'held' and the first sweep releases what is done (no rewrite of every row
    # here: an UPDATE rewrites a row's whole body).
    "ALTER TABLE messages ADD COLUMN body TEXT NOT NULL DEFAULT 'held'",
    "ALTER TABLE messages ADD COLUMN size INTEGER",  # NULL: length(raw), filled on release
    "UPDATE messages SET body = 'logged' WHERE json_extract(decision, '$.log_copy')",
    "CREATE INDEX messages_holding_body ON messages(id) WHERE body = 'held'",
    # A copy's tracked links, when they are the message's (every copy rendered from one
    # template has the same list), are stored once per message; links_shared says a copy
    # reads them there. A copy whose list differs keeps its own rows in links.
    """CREATE TABLE message_links (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (message_id, idx)
    ) WITHOUT ROWID""",
    "ALTER TABLE copies ADD COLUMN links_shared INTEGER NOT NULL DEFAULT 0",
)

_V8_LEASES: tuple[str, ...] = (  # work shared by leases: any number of delivering processes
    # A copy or a pending bounce is taken by one worker until lease_until (store/sql/
    # leases.py); the worker renews it while it sends, its outcome clears it, and a
    # worker that died stops renewing, so another takes the copy when the lease ends.
    "ALTER TABLE copies ADD COLUMN lease_owner TEXT",
    "ALTER TABLE copies ADD COLUMN lease_until REAL",
    "ALTER TABLE bounces ADD COLUMN lease_owner TEXT",
    "ALTER TABLE bounces ADD COLUMN lease_until REAL",
    # Named leases for work done by one process at a time (the retention purge, the
    # store sweep): one row per name, taken when absent or expired.
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until REAL NOT NULL
    ) WITHOUT ROWID""",
)

_V9_TAGS_SEARCH: tuple[str, ...] = (  # tags and search (store/sql/tags.py)
    # A message's tags, from X-Tag and the vendors' tag headers: tag as the sender spelled
    # it, tag_key folded to lower case in Python (compared on both engines alike).
    """CREATE TABLE message_tags (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        tag_key TEXT NOT NULL,
        PRIMARY KEY (message_id, tag_key)
    ) WITHOUT ROWID""",
    # A tag's messages in id (time) order: the tags list, a tag's report over a date
    # range, the messages list narrowed by tag.
    "CREATE INDEX message_tags_by_tag ON message_tags(tag_key, message_id)",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1,
    _V2_DELIVERY,
    _V3_CLASSIFY,
    _V4_WEB,
    _V5_QUIET,
    _V6_RECIPIENT_OUTCOMES,
    _V7_LEAN_STORE,
    _V8_LEASES,
    _V9_TAGS_SEARCH,
    (),  # step 10 is PostgreSQL's relay_outcome function (postgres/schema.py): none here
)
SCHEMA_VERSION = len(MIGRATIONS)
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Per-connection settings. FULL: a commit is fsync'd before it returns (SPEC 4).

    auto_vacuum must be chosen before the first table exists: a new store gets
    INCREMENTAL, so the space of released bodies can go back to the filesystem
    (store/sql/bodies.py); an older file is converted once (ensure_incremental_vacuum).
    """
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    # After a checkpoint the -wal file is cut back to this, not kept at its peak size.
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys=ON")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION, one transaction per step; returns the version.

    The connection must be in autocommit mode (isolation_level=None).
    """
    version = _user_version(conn)
    if version > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the database has schema version {version}, newer than this relay's "
            f"{SCHEMA_VERSION}: upgrade the relay"
        )
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if _user_version(conn) != step:  # another process migrated meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return _user_version(conn)


def _user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])
