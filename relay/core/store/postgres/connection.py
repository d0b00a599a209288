"""A psycopg 3 connection that the store's SQL (relay/core/store/sql/) can use like sqlite3's.

The queries are written once, in the `?` style of sqlite3, and run on both
engines. This adapter is the whole difference on the PostgreSQL side: it
translates each distinct SQL string once (cached) - `?` placeholders outside
quoted literals become `%s`, a literal `%` becomes `%%`, `BEGIN IMMEDIATE`
becomes `BEGIN` - and returns cursors that answer fetchone/fetchall/iteration
and rowcount as sqlite3's do (a statement without rows fetches nothing
instead of raising). The connection stays in autocommit mode, so
transactions are opened explicitly with BEGIN/COMMIT, SAVEPOINT and
ROLLBACK TO, exactly as the SQLite backend does.

`dialect = "postgres"`: a query that needs one clause of its own per engine
asks `relay.core.store.sql.dialect` (which reads this attribute).

In pipeline mode (``Connection.pipelined``, the writer's batches) a statement
is sent without waiting for its result: the round trip is paid only when a
result is read (fetch, iteration, rowcount) or the pipeline is synced, so
the statements whose results nobody reads ride along with the next one that
is read. An error may then surface at a later read or at the sync.

Callers never see psycopg's exceptions: `translate_error` turns bad input into
ValueError and the rest into StoreUnavailable, like sqlite/writer.py.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus

from relay.core.store.base import StoreUnavailable

CONNECT_TIMEOUT = 10  # seconds
APPLICATION_NAME = "mail-tracking-relay"
_RETRYABLE = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
    psycopg.errors.TransactionRollback,
)
# A quoted literal or identifier, a comment, or one of the characters to translate.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|[?%]")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """SQLite-style SQL as psycopg wants it (cached per distinct string)."""
    if sql.startswith("BEGIN IMMEDIATE"):
        sql = "BEGIN" + sql[len("BEGIN IMMEDIATE") :]
    if "?" not in sql and "%" not in sql:
        return sql
    return _TOKENS.sub(_translate_token, sql)


def _translate_token(match: re.Match[str]) -> str:
    found = match.group(0)
    if found == "?":
        return "%s"
    return found.replace("%", "%%")  # psycopg reads % everywhere, literals included


class Cursor:
    """What the store's SQL reads of a sqlite3 cursor."""

    __slots__ = ("_cursor", "_pipeline")

    def __init__(self, cursor: psycopg.Cursor[Any], pipeline: psycopg.Pipeline | None) -> None:
        self._cursor = cursor
        self._pipeline = pipeline

    def _arrived(self) -> psycopg.Cursor[Any]:
        """The cursor, its result received (in pipeline mode: one sync, the round trip)."""
        if self._pipeline is not None and self._cursor.pgresult is None:
            self._pipeline.sync()
        return self._cursor

    @property
    def rowcount(self) -> int:
        return self._arrived().rowcount

    def fetchone(self) -> Any:
        cursor = self._arrived()
        if cursor.description is None:
            return None
        return cursor.fetchone()

    def fetchall(self) -> list[Any]:
        cursor = self._arrived()
        if cursor.description is None:
            return []
        return cursor.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Connection:
    """sqlite3.Connection's subset that relay/core/store/sql/ uses, over one psycopg connection.

    Not thread-safe: each connection is used by one thread at a time (the
    writer's, or one of the read pool's)."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.raw = conn  # schema code runs DDL on it untranslated
        self._pipeline: psycopg.Pipeline | None = None

    @classmethod
    def connect(cls, url: str, *, read_only: bool = False) -> Connection:
        """An autocommit connection; read_only refuses writes (the read pool's)."""
        options = "-c synchronous_commit=on"
        if read_only:
            options += " -c default_transaction_read_only=on"
        conn = psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT,
            application_name=APPLICATION_NAME,
            options=options,
        )
        return cls(conn)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), params)
        return Cursor(cursor, self._pipeline)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), seq_of_params)
        return Cursor(cursor, self._pipeline)

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        """Pipeline mode for the block: statements go out without waiting for their
        results; leaving the block syncs (and logs, rather than raises, an error met
        then if the block raised one already)."""
        with self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None

    @property
    def in_pipeline(self) -> bool:
        return self._pipeline is not None

    def sync(self) -> None:
        """In pipeline mode, wait for every statement sent so far (raising the first
        error among them); otherwise nothing to do."""
        if self._pipeline is not None:
            self._pipeline.sync()

    @property
    def failed(self) -> bool:
        """Inside a transaction that a failed statement aborted (ROLLBACK is all it takes)."""
        return self.raw.info.transaction_status == TransactionStatus.INERROR

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def usable(self) -> bool:
        """False once the server or the network dropped the connection: make a new one."""
        return not (self.raw.closed or self.raw.broken)

    def rollback_if_open(self) -> None:
        """End a transaction a failed op left open (aborted or not); harmless when none is."""
        if self.usable and self.in_transaction:
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        self.raw.close()


def is_retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the same work may succeed when run again."""
    return isinstance(exc, _RETRYABLE)


def translate_error(exc: Exception) -> Exception:
    """Callers never see psycopg: bad input is a ValueError, the rest StoreUnavailable."""
    if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
        return ValueError(f"refused by the store: {exc}")
    if isinstance(exc, psycopg.Error):
        return StoreUnavailable(str(exc).strip() or type(exc).__name__)
    return exc


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{parts.username or ''}:***@{host}{port}"
    except ValueError:
        return "<unparsable url>"
    return urlunsplit(parts._replace(netloc=netloc))
