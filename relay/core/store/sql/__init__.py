"""The store's queries, written once for every backend.

Each function takes a DB-API connection (sqlite3's, or the PostgreSQL
backend's adapter) and runs inside the caller's transaction; the backends
decide how connections, transactions and commits are arranged.
"""
