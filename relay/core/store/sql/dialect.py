"""The few clauses SQLite and PostgreSQL spell differently, one function each.

The queries are written once for both engines; where no common form exists,
they ask here. The PostgreSQL connection adapter says ``dialect =
"postgres"`` (relay/core/store/postgres/connection.py); a sqlite3 connection
has no such attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def is_postgres(conn: Any) -> bool:
    return getattr(conn, "dialect", "sqlite") == "postgres"


def json_text(conn: Any, column: str, key: str) -> str:
    """The text of ``column``'s top-level JSON field ``key`` (NULL when absent).

    ``key`` must be a constant identifier: it is written into the SQL."""
    if not key.isidentifier():
        raise ValueError(f"not a JSON key for SQL: {key!r}")
    if is_postgres(conn):
        return f"({column}::json ->> '{key}')"
    return f"json_extract({column}, '$.{key}')"


def json_object_of(conn: Any, key: str, value: str) -> str:
    """An aggregate: one JSON object text of key -> value over the group's rows."""
    if is_postgres(conn):
        return f"json_object_agg({key}, {value})::text"
    return f"json_group_object({key}, {value})"


def whole(conn: Any, expr: str) -> str:
    """``expr`` (non-negative) rounded down to an integer: SQLite's CAST truncates,
    PostgreSQL's rounds, so PostgreSQL floors first."""
    if is_postgres(conn):
        return f"floor({expr})::bigint"
    return f"CAST({expr} AS INTEGER)"


def skip_locked(conn: Any) -> str:
    """The row-locking clause of a SELECT that takes rows to change (claims): on
    PostgreSQL concurrent takers skip each other's rows instead of waiting; SQLite's
    single writer needs nothing."""
    return " FOR UPDATE SKIP LOCKED" if is_postgres(conn) else ""


def indexed_by(conn: Any, index: str) -> str:
    """Holds SQLite's planner to ``index``: without statistics it picks copies_by_state
    for a due-copies walk and sorts every queued copy per claim (1.4 ms at 6,000 queued,
    0.03 ms along copies_due). PostgreSQL's planner has its statistics."""
    return "" if is_postgres(conn) else f" INDEXED BY {index}"


def inserted_ids(conn: Any, sql: str, params: Sequence[Any], rows: int) -> list[int]:
    """Run ``sql``, an INSERT of ``rows`` rows into a table keyed by ``id``; the new ids
    in VALUES order.

    PostgreSQL returns them (RETURNING: ids from one statement grow in VALUES order,
    though other sessions' inserts may come between them). SQLite gives one statement's
    rows consecutive AUTOINCREMENT ids, the last one being lastrowid: no RETURNING,
    whose rows would each cost the writer thread a GIL hand-off (sqlite/writer.py)."""
    if is_postgres(conn):
        return sorted(int(row[0]) for row in conn.execute(sql + " RETURNING id", params))
    last = conn.execute(sql, params).lastrowid
    assert last is not None
    return list(range(last - rows + 1, last + 1))


def text_array(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal of text values, for a ``?::text[]`` parameter.

    psycopg adapts a Python list element by element in Python (measured: a quarter of
    the delivery writer's CPU went to three lists of links per copy); a string goes
    through its C path and the server parses the literal. Every element is quoted, so
    NULL, commas and braces are text; a backslash and a double quote are escaped; None
    is NULL."""
    quoted = (
        "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        for value in values
    )
    return "{" + ",".join(quoted) + "}"


def number_array(values: Sequence[int | float | None]) -> str:
    """text_array for numbers (``?::bigint[]``, ``?::float8[]``...): repr of a float reads
    back as the same float."""
    return "{" + ",".join("NULL" if value is None else repr(value) for value in values) + "}"


def pipelined(conn: Any) -> bool:
    """A PostgreSQL connection in pipeline mode (its writer's batches): a result read
    costs a round trip there, so a write that can be checked later should be."""
    return bool(getattr(conn, "in_pipeline", False))


class Unconfirmed:
    """A write op's result that is known only once its batch's statements came back:
    the writer calls ``confirm()`` after the batch's one sync, before it answers the
    caller (postgres/writer.run_plainly). ``confirm`` returns the op's result or raises
    the op's error (a ValueError for bad input: the op then wrote nothing)."""

    def __init__(self, confirm: Callable[[], Any]) -> None:
        self.confirm = confirm
