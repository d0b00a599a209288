"""The `postgres_url` fixture: a real, writable, empty database of its own per test."""

from __future__ import annotations

import psycopg
import pytest
from support.postgres import PostgresServer

SEEN_URLS: set[str] = set()


def _tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return sorted(name for (name,) in rows)


def test_a_database_is_writable_and_commits(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE messages (id integer PRIMARY KEY, subject text NOT NULL)")
        conn.execute(
            "INSERT INTO messages (id, subject) VALUES (%s, %s), (%s, %s)",
            (1, "hello", 2, "héllo wörld"),
        )
    # committed on leaving the block: a second connection sees the rows
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT id, subject FROM messages ORDER BY id").fetchall()
        encoding = conn.execute("SHOW server_encoding").fetchone()
    assert rows == [(1, "hello"), (2, "héllo wörld")]
    assert encoding == ("UTF8",)


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_a_database_of_its_own_and_empty(postgres_url: str, run: str) -> None:
    # Whichever of the two runs second fails here if the databases were shared.
    assert postgres_url not in SEEN_URLS
    SEEN_URLS.add(postgres_url)
    assert _tables(postgres_url) == []
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE leftover (x integer)")
        conn.execute("INSERT INTO leftover VALUES (1)")
    assert _tables(postgres_url) == ["leftover"]


def test_the_server_is_durable_and_on_loopback_only(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert postgres_url.startswith(f"postgresql://relay@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(postgres_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'listen_addresses')"
            ).fetchall()
        )
    assert settings == {"fsync": "on", "synchronous_commit": "on", "listen_addresses": "127.0.0.1"}
