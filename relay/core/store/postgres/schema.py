"""PostgreSQL schema and migrations, versioned in the table schema_version.

The steps follow the SQLite backend's list (relay/core/store/sqlite/schema.py):
append a step to both, never edit a shipped one. The SQLite list had eight
steps when PostgreSQL came, so MIGRATIONS[0] creates everything those eight
made at once (BASELINE_VERSION: version 8 means the same schema on both
engines), and each step after it is the SQLite step of the same version:
MIGRATIONS[i] takes a database from version 7 + i to 8 + i.

Migrating is explicit here (`relay migrate`, which calls ``migrate``): several
nodes share one database, and none of them should change it by surprise on
start. Opening a store only checks the version (``check``): a newer schema is
refused (an older relay would misread it), and so is an older or empty one.
``migrate`` holds a transaction-level advisory lock, so two nodes migrating at
once take turns, and runs all steps in one transaction (PostgreSQL's DDL is
transactional: a failed migration leaves the database as it was).

Types follow what the shared SQL expects of SQLite: ids are BIGINT identities
(never reused: copy ids are signed into tokens that never expire), times are
double precision, bodies bytea, and flags stay integers (``inferred = 1``),
so one query text runs on both.
"""

from __future__ import annotations

from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres.connection import Connection
from relay.core.store.sql.classes import COUNTED_CLASS
from relay.core.store.sql.writes import LINKS_LOCK

# pg_advisory_xact_lock key of migrations: any constant shared by every relay.
MIGRATION_LOCK = 0x72656C6179  # "relay"
EVENTS_LOCK = 0x72656C6576  # "relev": held from an event insert to its COMMIT
# Rows of the hourly rollup per (hour, kind, class): each server process adds to
# its own (pg_backend_pid() % ROLLUP_SHARDS), so concurrent writers do not queue
# behind one hot row, nor deadlock on two; the readers sum the shards.
ROLLUP_SHARDS = 16

_IDENTITY = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
_WEBHOOKS_WANTED = "(SELECT value FROM settings WHERE name = 'webhooks') = 'on'"

_TABLES = (
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        mail_from TEXT NOT NULL,
        rcpt_tos TEXT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        client_addr TEXT NOT NULL,
        auth_user TEXT,
        sender TEXT NOT NULL,
        subject TEXT NOT NULL,
        message_id_header TEXT NOT NULL,
        decision TEXT NOT NULL,
        in_reply_to TEXT NOT NULL,
        raw BYTEA NOT NULL,
        body TEXT NOT NULL DEFAULT 'held',
        size BIGINT
    )""",
    f"""CREATE TABLE copies (
        id {_IDENTITY},
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        recipient TEXT,
        rcpt_tos TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        last_reply TEXT NOT NULL DEFAULT '',
        queue_id TEXT NOT NULL DEFAULT '',
        delivered_at DOUBLE PRECISION,
        rewrite_note TEXT NOT NULL DEFAULT '',
        created_at DOUBLE PRECISION NOT NULL,
        rcpt_replies TEXT NOT NULL DEFAULT '{{}}',
        links_shared INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    )""",
    """CREATE TABLE links (
        copy_id BIGINT NOT NULL REFERENCES copies(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (copy_id, idx)
    )""",
    """CREATE TABLE message_links (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        url TEXT NOT NULL,
        PRIMARY KEY (message_id, idx)
    )""",
    f"""CREATE TABLE events (
        id {_IDENTITY},
        kind TEXT NOT NULL,
        copy_id BIGINT NOT NULL REFERENCES copies(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        recipient TEXT,
        at DOUBLE PRECISION NOT NULL,
        ip TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        klass TEXT NOT NULL,
        reasons TEXT NOT NULL,
        url TEXT NOT NULL,
        link_index INTEGER,
        inferred INTEGER NOT NULL,
        extra TEXT NOT NULL DEFAULT '{{}}'
    )""",
    f"""CREATE TABLE secrets (
        id {_IDENTITY},
        key TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE bounces (
        copy_id BIGINT PRIMARY KEY REFERENCES copies(id) ON DELETE CASCADE,
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        last_reply TEXT NOT NULL DEFAULT '',
        sent_at DOUBLE PRECISION,
        lease_owner TEXT,
        lease_until DOUBLE PRECISION
    )""",
    f"""CREATE TABLE webhook_queue (
        id {_IDENTITY},
        kind TEXT NOT NULL,
        event_id BIGINT,
        copy_id BIGINT NOT NULL,
        at DOUBLE PRECISION NOT NULL
    )""",
    f"""CREATE TABLE webhook_outbox (
        id {_IDENTITY},
        webhook_id TEXT NOT NULL UNIQUE,
        endpoint TEXT NOT NULL,
        notice TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        last_error TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE event_hours (
        hour BIGINT NOT NULL,
        kind TEXT NOT NULL,
        klass TEXT NOT NULL,
        shard INTEGER NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (hour, kind, klass, shard)
    )""",
    "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT INTO settings (name, value) VALUES ('webhooks', 'on')",
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        until DOUBLE PRECISION NOT NULL
    )""",
)

# The SQLite schema's indexes, by the same names (its comments say what each serves).
_INDEXES = (
    "CREATE INDEX copies_by_message ON copies(message_id)",
    "CREATE INDEX copies_due ON copies(next_attempt_at, id) WHERE state IN ('queued', 'deferred')",
    "CREATE INDEX copies_by_recipient ON copies(recipient)",
    "CREATE INDEX copies_by_state ON copies(state)",
    """CREATE INDEX events_by_message
        ON events(message_id, kind, copy_id, klass, inferred, at, link_index)""",
    "CREATE INDEX events_by_copy ON events(copy_id)",
    "CREATE INDEX events_by_recipient ON events(recipient, id)",
    "CREATE INDEX events_by_kind ON events(kind, id)",
    "CREATE INDEX events_by_client ON events(message_id, ip, user_agent)",
    "CREATE INDEX events_by_time ON events(at, kind, klass, inferred)",
    "CREATE INDEX bounces_due ON bounces(next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX bounces_by_message ON bounces(message_id)",
    "CREATE INDEX messages_by_header ON messages(message_id_header)",
    "CREATE INDEX messages_by_time ON messages(received_at)",
    "CREATE INDEX messages_by_sender ON messages(sender, id)",
    "CREATE INDEX messages_holding_body ON messages(id) WHERE body = 'held'",
    """CREATE INDEX webhook_outbox_due ON webhook_outbox(next_attempt_at, id)
        WHERE state = 'pending'""",
)


def _rollup_trigger(operation: str, sides: tuple[tuple[str, str, int], ...]) -> tuple[str, str]:
    """The function and the statement-level trigger that keep event_hours for one operation."""
    name = f"event_hours_{operation.lower()}"
    changes = " UNION ALL ".join(
        f"SELECT floor(at / 3600)::bigint AS hour, kind, {COUNTED_CLASS} AS klass,"
        f" {sign} AS d FROM {table}"
        for _side, table, sign in sides
    )
    referencing = " ".join(f"{side} TABLE AS {table}" for side, table, _sign in sides)
    function = f"""CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO event_hours (hour, kind, klass, shard, n)
        SELECT hour, kind, klass, pg_backend_pid() % {ROLLUP_SHARDS}, sum(d)
        FROM ({changes}) AS changes
        GROUP BY hour, kind, klass HAVING sum(d) != 0
        ON CONFLICT (hour, kind, klass, shard) DO UPDATE SET n = event_hours.n + excluded.n;
        RETURN NULL;
    END $$"""
    trigger = (
        f"CREATE TRIGGER {name} AFTER {operation} ON events REFERENCING {referencing}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
    )
    return function, trigger


# Webhooks: every event and delivery outcome is queued in the statement that records
# it, while some HTTP role wants webhooks (settings 'webhooks'; store/sql/outbox.py).
# Statement-level triggers with transition tables: a multi-row insert of events
# queues them with one INSERT ... SELECT instead of one per row.
_TRIGGERS = (
    f"""CREATE FUNCTION webhook_queue_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {_WEBHOOKS_WANTED} THEN
            INSERT INTO webhook_queue (kind, event_id, copy_id, at)
            SELECT kind, id, copy_id, at FROM new_events ORDER BY id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER webhook_queue_events AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_events
        FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_events()""",
    f"""CREATE FUNCTION webhook_queue_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {_WEBHOOKS_WANTED} THEN
            INSERT INTO webhook_queue (kind, event_id, copy_id, at)
            VALUES (CASE NEW.state WHEN 'bounced' THEN 'bounce' ELSE NEW.state END, NULL,
                    NEW.id, extract(epoch FROM statement_timestamp())::double precision);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER webhook_queue_outcomes AFTER UPDATE OF state, attempts ON copies
        FOR EACH ROW
        WHEN (NEW.state IN ('delivered', 'deferred', 'bounced')
              AND (NEW.state IS DISTINCT FROM OLD.state
                   OR NEW.attempts IS DISTINCT FROM OLD.attempts))
        EXECUTE FUNCTION webhook_queue_outcomes()""",
    # Event ids in commit order, as on SQLite: readers page by id (GET /api/events?since=,
    # the live feed's checkpoints), and an id that committed after a higher one was read
    # would be skipped for ever. So a statement that inserts events first takes one
    # transaction-level lock, before its rows draw ids, and keeps it until its COMMIT:
    # event inserts commit one transaction at a time, in id order (group commit puts
    # many hits in each, so this costs little), whatever process or node writes them.
    f"""CREATE FUNCTION events_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock({EVENTS_LOCK});
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER events_in_order BEFORE INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION events_in_order()""",
    # The live feed of every node: a statement that inserts events tells the listeners
    # (postgres/listen.py), once per transaction, when it commits.
    """CREATE FUNCTION notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('relay_events', '');
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER notify_events AFTER INSERT ON events
        FOR EACH STATEMENT EXECUTE FUNCTION notify_events()""",
    *(  # Charts: events per hour, kind and class (inferred counts as human), kept in
        # the statement that changes events. Each statement adds its changes, grouped,
        # to its own process's shard (store/sql/rollup.py sums the shards). The class is
        # COUNTED_CLASS as it was when the baseline shipped: a database made then keeps
        # these functions, so a new definition takes a step that replaces them.
        statement
        for operation, sides in (
            ("INSERT", (("NEW", "new_events", 1),)),
            ("DELETE", (("OLD", "old_events", -1),)),
            ("UPDATE", (("OLD", "old_events", -1), ("NEW", "new_events", 1))),
        )
        for statement in _rollup_trigger(operation, sides)
    ),
)


_V8_BASELINE: tuple[str, ...] = (*_TABLES, *_INDEXES, *_TRIGGERS)

_V9_TAGS_SEARCH: tuple[str, ...] = (  # the SQLite list's step 9 (its comments say why)
    """CREATE TABLE message_tags (
        message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        tag_key TEXT NOT NULL,
        PRIMARY KEY (message_id, tag_key)
    )""",
    "CREATE INDEX message_tags_by_tag ON message_tags(tag_key, message_id)",
)

# A delivery outcome in one statement (store/sql/queue.py, record_outcome_unread): the
# same writes as the shared SQL's, which cost a statement each (six or seven per copy,
# each about 25 us of the delivery process's CPU and 13 of the server's; inside a
# function about 4 and 6). Python still decides the state (writes.outcome_state) and
# cleans every text; the function only writes. Its links protocol is copy_links_postgres':
# the first copies of a message take turns on the message's lock, and each statement
# after it sees what the other committed (a VOLATILE function takes a new snapshot per
# statement under READ COMMITTED). Returns 0 when the copy does not exist (nothing
# written), else 1. On SQLite this step is empty.
_V10_OUTCOME: tuple[str, ...] = (
    f"""CREATE FUNCTION relay_outcome(
        p_copy BIGINT, p_state TEXT, p_reply TEXT, p_queue_id TEXT,
        p_next DOUBLE PRECISION, p_delivered_at DOUBLE PRECISION, p_note TEXT,
        p_links TEXT[], p_now DOUBLE PRECISION) RETURNS INTEGER
    LANGUAGE plpgsql AS $$
    DECLARE
        v_message TEXT;
        v_from TEXT;
        v_listed TEXT[];
        v_shared INTEGER;
    BEGIN
        SELECT c.message_id, m.mail_from INTO v_message, v_from
            FROM copies c JOIN messages m ON m.id = c.message_id WHERE c.id = p_copy;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        IF p_links IS NOT NULL THEN
            DELETE FROM links WHERE copy_id = p_copy;
            v_shared := 0;
            IF cardinality(p_links) > 0 THEN
                IF NOT EXISTS (SELECT 1 FROM message_links WHERE message_id = v_message) THEN
                    PERFORM pg_advisory_xact_lock({LINKS_LOCK}, hashtext(v_message));
                    INSERT INTO message_links (message_id, idx, url)
                        SELECT v_message, n - 1, url
                        FROM unnest(p_links) WITH ORDINALITY AS u(url, n)
                        WHERE NOT EXISTS (
                            SELECT 1 FROM message_links WHERE message_id = v_message);
                END IF;
                SELECT array_agg(url ORDER BY idx) INTO v_listed
                    FROM message_links WHERE message_id = v_message;
                IF v_listed = p_links THEN
                    v_shared := 1;
                ELSE
                    INSERT INTO links (copy_id, idx, url)
                        SELECT p_copy, n - 1, url
                        FROM unnest(p_links) WITH ORDINALITY AS u(url, n);
                END IF;
            END IF;
        END IF;
        UPDATE copies SET state = p_state, attempts = attempts + 1, last_reply = p_reply,
            rcpt_replies = '{{}}', lease_owner = NULL, lease_until = NULL,
            queue_id = CASE WHEN p_queue_id = '' THEN queue_id ELSE p_queue_id END,
            next_attempt_at = COALESCE(p_next, next_attempt_at),
            delivered_at = p_delivered_at,
            rewrite_note = CASE WHEN p_note = '' THEN rewrite_note ELSE p_note END,
            links_shared = COALESCE(v_shared, links_shared)
            WHERE id = p_copy;
        IF p_state = 'bounced' THEN
            INSERT INTO bounces (copy_id, message_id, state, reason, created_at,
                next_attempt_at)
                VALUES (p_copy, v_message, CASE WHEN v_from <> '' THEN 'pending'
                    ELSE 'skipped' END, p_reply, p_now, p_now)
                ON CONFLICT DO NOTHING;
        END IF;
        IF p_state <> 'deferred' THEN
            UPDATE messages SET raw = '', size = COALESCE(size, length(raw)),
                body = 'released'
                WHERE id = v_message AND body = 'held'
                AND NOT EXISTS (SELECT 1 FROM copies c WHERE c.message_id = v_message
                    AND c.state IN ('queued', 'deferred'))
                AND NOT EXISTS (SELECT 1 FROM bounces b WHERE b.message_id = v_message
                    AND b.state = 'pending');
        END IF;
        RETURN 1;
    END $$""",
    # Every statement in it finds its rows by a key. PL/pgSQL keeps a statement's plan for
    # the session, and a plan made while message_links was nearly empty (a new database,
    # a queue spooled before any delivery) scanned the whole table for each copy from then
    # on: 9,000 scans reading 270 million rows in a drain of 6,000 copies, a fifth of the
    # rate. With sequential scans off an index is used whatever the statistics say.
    "ALTER FUNCTION relay_outcome SET enable_seqscan = off",
)

# One baseline step for the SQLite list's first eight; the steps after it are 1:1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V8_BASELINE, _V9_TAGS_SEARCH, _V10_OUTCOME)
BASELINE_VERSION = 8
SCHEMA_VERSION = BASELINE_VERSION + len(MIGRATIONS) - 1


def current_version(conn: Connection) -> int:
    """The schema version of the database; 0 for one without the relay's schema."""
    row = conn.raw.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.raw.execute("SELECT max(version) FROM schema_version").fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def newer_error(version: int) -> StoreUnavailable:
    return StoreUnavailable(
        f"the database has schema version {version}, newer than this relay's "
        f"{SCHEMA_VERSION}: upgrade the relay"
    )


def check(conn: Connection) -> int:
    """At open: the database's version must be this relay's; returns it.

    One line each for a newer schema (upgrade the relay) and an older or missing
    one (run `relay migrate`, which every node of a cluster then shares)."""
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise newer_error(version)
    if version == 0:
        raise StoreUnavailable(
            "the database has no relay schema yet: run `relay migrate` to create it"
        )
    if version < SCHEMA_VERSION:
        raise StoreUnavailable(
            f"the database has schema version {version}, older than this relay's "
            f"{SCHEMA_VERSION}: run `relay migrate`"
        )
    return version


def migrate(conn: Connection) -> tuple[int, int]:
    """Bring the schema up to SCHEMA_VERSION in one transaction; returns (before, after).

    Idempotent, and safe when several nodes run it at once (advisory lock)."""
    conn.raw.execute("BEGIN")
    try:
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        before = current_version(conn)
        if before > SCHEMA_VERSION:
            raise newer_error(before)
        if before == 0:
            conn.raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            conn.raw.execute("INSERT INTO schema_version (version) VALUES (0)")
            steps = range(len(MIGRATIONS))
        elif before < BASELINE_VERSION:
            raise StoreUnavailable(f"the database has an unknown schema version {before}")
        else:
            steps = range(before - BASELINE_VERSION + 1, len(MIGRATIONS))
        for step in steps:
            for statement in MIGRATIONS[step]:
                conn.raw.execute(statement)  # DDL as written: no parameters, no translation
        conn.raw.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))
        conn.raw.execute("COMMIT")
    except BaseException:
        conn.rollback_if_open()
        raise
    return before, SCHEMA_VERSION
