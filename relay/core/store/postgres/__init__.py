"""The PostgreSQL backend: one database shared by every process and node (SPEC 9)."""

from relay.core.store.postgres.store import PostgresStore, migrate_database

__all__ = ["PostgresStore", "migrate_database"]
