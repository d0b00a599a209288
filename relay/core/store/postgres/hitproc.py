"""The event writer process on PostgreSQL: tracking hits committed outside the HTTP process.

Why a process: a write connection in a thread of the HTTP process must win
the GIL back from its busy event loop after every round trip to the server
(measured: the pixel path at 0.5-0.7x SQLite's, whose own event writer
process, store/sqlite/hitproc.py, had solved the same). Here nothing else
runs: the HTTP side sends hits over a socketpair (store/sqlite/hitclient.py,
the same frames as SQLite's process), and this loop gathers them in ONE open
transaction in pipeline mode (OpenBatch: the plain opens of a batch as one
statement, writes.postgres_hits, sent with its COMMIT). Only after COMMIT
returned (synchronous_commit on) is each hit acknowledged, so an
acknowledged hit is durable; one not yet acknowledged when this process dies
is sent again through the HTTP process's own store (hitclient).

The first frame from the HTTP side names the database (its URL, password
included: never on the command line); the first from here is ``("ready",
pid)``, sent once connected. Like SQLite's, the process ignores SIGINT and
SIGTERM and ends when the HTTP side closes its end, after committing and
acknowledging what it has.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from typing import Any

from relay.core.models import Event
from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres.connection import Connection, translate_error
from relay.core.store.postgres.writer import commit_items
from relay.core.store.sql import hits, writes
from relay.core.store.sqlite.hitproc import (
    FrameReader,
    Reply,
    Request,
    acknowledgement,
    encode_frame,
    event_from_fields,
    read_target,
    receive,
    write_item,
)

MAX_BATCH = 1000  # hits per transaction
MAX_OPEN = 0.005  # seconds a transaction takes new hits before it is committed
log = logging.getLogger(__name__)

Part = tuple[list[Event], Any]  # hits, and the cursor of their INSERT (or the op's result)


class OpenBatch:
    """One transaction, in pipeline mode, that takes hits as they arrive.

    Plain opens are gathered and sent as one statement (writes.postgres_hits, its result
    read only after COMMIT) right before the COMMIT, or before the next other hit, which
    goes through hits.record_hit as the store runs it. Sending a statement per frame as
    frames came (16 hits each) overlapped the server's inserting with the HTTP side's
    work, but each statement cost this process psycopg's pipeline machinery on the cycle
    that 50 waiting connections go round in lockstep: one statement per batch answered
    1.18x the pixels (pixel.py, PostgreSQL, four alternating rounds: 7,751 against 6,537
    req/s). Should anything fail on the way, the transaction is rolled
    back and the batch runs again as the store's writer runs one (commit_items: a
    failing hit then fails alone). A steady stream is cut every MAX_OPEN seconds or
    MAX_BATCH hits, so no hit waits behind it.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Connection | None = Connection.connect(url)
        self.requests: list[Request] = []
        self._events: list[Event] = []
        self._parts: list[Part] = []
        self._plain: list[Event] = []  # plain opens not sent yet
        self._pipeline = contextlib.ExitStack()
        self._broken = False
        self._began = 0.0

    @property
    def full(self) -> bool:
        return len(self.requests) >= MAX_BATCH or time.monotonic() - self._began > MAX_OPEN

    def add(self, requests: list[Request]) -> None:
        if not requests:
            return
        first = not self.requests
        events = [event_from_fields(fields) for _, fields, _ in requests]
        self.requests += requests
        self._events += events
        if first:
            self._began = time.monotonic()
            self._broken = False
        if self._broken:
            return
        try:
            conn = self._connection()
            if first:
                self._pipeline.enter_context(conn.pipelined())
                conn.execute("BEGIN")
            plain = [e for e, r in zip(events, requests, strict=True) if _plain(e, r[2])]
            if len(plain) == len(events):
                self._plain += events  # inserted together, before COMMIT or the next other hit
                return
            self._insert_plain(conn)
            shared: Any = conn  # the shared SQL is typed for sqlite3; the adapter stands in
            for event, request in zip(events, requests, strict=True):
                self._parts.append(([event], hits.record_hit(shared, event, request[2])))
        except Exception as exc:  # the batch runs again at commit, hit by hit if need be
            log.debug("event writer: a batch broke: %r", exc)
            self._broken = True

    def _insert_plain(self, conn: Connection) -> None:
        """The plain opens gathered so far, as one statement (writes.postgres_hits)."""
        if self._plain:
            events, self._plain = self._plain, []
            sql, params = writes.postgres_hits(events)
            self._parts.append((events, conn.execute(sql, params)))

    def commit(self) -> list[Reply]:
        """Make everything added durable, then say what each hit became."""
        if self._plain and not self._broken:
            try:
                self._insert_plain(self._connection())
            except Exception as exc:  # the batch runs again below, hit by hit if need be
                log.debug("event writer: a batch broke: %r", exc)
                self._broken = True
        self._plain = []
        requests, events, parts = self.requests, self._events, self._parts
        self.requests, self._events, self._parts = [], [], []
        committed = False
        if not self._broken:
            try:
                conn = self._connection()
                conn.execute("COMMIT")
                self._pipeline.close()  # leaving pipeline mode syncs: the COMMIT's round trip
                committed = True
            except Exception as exc:
                log.debug("event writer: a batch failed to commit: %r", exc)
        self._leave_pipeline()
        if committed:
            results = _results(parts)
        else:
            results = self._again(requests, events)
        return [
            (request[0], ok, acknowledgement(event, value) if ok else _portable(value))
            for request, event, (ok, value) in zip(requests, events, results, strict=True)
        ]

    def _again(self, requests: list[Request], events: list[Event]) -> list[tuple[bool, Any]]:
        """The batch as the store's writer runs it, after the open transaction failed."""
        items = [write_item(e, r[2]) for e, r in zip(events, requests, strict=True)]
        try:
            conn = self._connection()
            conn.rollback_if_open()
            results, _ = commit_items(conn, items)
        except Exception as exc:  # the connection broke, or COMMIT failed: nothing stored
            failure = translate_error(exc)
            if not isinstance(failure, StoreUnavailable):
                failure = StoreUnavailable(f"could not commit: {exc}")
            return [(False, failure)] * len(requests)
        return results

    def _leave_pipeline(self) -> None:
        try:
            self._pipeline.close()
        except Exception as exc:  # what the server skipped after a failure, or a lost link
            log.debug("event writer: leaving pipeline mode: %r", exc)
        self._pipeline = contextlib.ExitStack()

    def _connection(self) -> Connection:
        if self._conn is None or not self._conn.usable:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = Connection.connect(self._url)
        return self._conn

    def close(self) -> None:
        self._leave_pipeline()
        if self._conn is not None:
            self._conn.close()


def _plain(event: Event, relabel_client: bool) -> bool:
    return event.kind == "open" and not relabel_client


def _results(parts: list[Part]) -> list[tuple[bool, Any]]:
    """Each hit's outcome, from a committed batch's parts."""
    results: list[tuple[bool, Any]] = []
    for events, value in parts:
        if isinstance(value, list):  # hits.record_hit's events
            results.append((True, value))
            continue
        for placed in writes.placed_hits(events, value.fetchall()):
            if placed is None:
                results.append((False, ValueError("no such copy")))
            else:
                results.append((True, placed))
    return results


def _portable(exc: Exception) -> Exception:
    """An error the other side can unpickle and understands (commit_items translated it)."""
    if isinstance(exc, ValueError | StoreUnavailable):
        return exc
    return StoreUnavailable(repr(exc))


def serve(sock: socket.socket, url: str, reader: FrameReader) -> None:
    """Gather hits while they come; commit and acknowledge when none is waiting."""
    batch = OpenBatch(url)
    sock.sendall(encode_frame(("ready", os.getpid())))
    try:
        while True:
            if batch.requests and batch.full:
                data: bytes | None = None
            else:
                data = receive(sock, wait=not batch.requests)
            if data is None:  # quiet (or full): make the batch durable and answer
                sock.sendall(encode_frame(batch.commit()))
                continue
            if not data:
                break
            batch.add([r for frame in reader.feed(data) for r in frame])
        if batch.requests:
            sock.sendall(encode_frame(batch.commit()))
    finally:
        batch.close()


def main(argv: list[str]) -> int:
    """``[fd]``: the socket inherited from hitclient; the database's URL is its first frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[0])) as sock:
        reader = FrameReader()
        try:
            serve(sock, read_target(sock, reader), reader)
        except (BrokenPipeError, ConnectionResetError):
            return 1  # the HTTP process is gone; what was committed stays
    return 0
