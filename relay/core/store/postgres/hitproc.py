"""The event writer process on PostgreSQL: tracking hits committed outside the HTTP process.

Why a process: a write connection in a thread of the HTTP process must win
the GIL back from its busy event loop after every round trip to the server
(measured: the pixel path at 0.5-0.7x SQLite's, whose own event writer
process, store/sqlite/hitproc.py, had solved the same). Here nothing else
runs: the HTTP side sends hits over a socketpair (store/sqlite/hitclient.py,
the same frames as SQLite's process), this loop gathers what arrives while a
batch commits, and runs each gathered batch as the PostgreSQL writer runs
one (postgres/writer.commit_items: one transaction in pipeline mode, plain
hits as one multi-row INSERT; should a hit fail, the batch again with a
SAVEPOINT per op so it fails alone; after a deadlock, op by op). Only after
COMMIT returned (synchronous_commit on) is each hit acknowledged, so an
acknowledged hit is durable; one not yet acknowledged when this process dies
is sent again through the HTTP process's own store (hitclient).

The first frame from the HTTP side names the database (its URL, password
included: never on the command line); the first from here is ``("ready",
pid)``, sent once connected. Like SQLite's, the process ignores SIGINT and
SIGTERM and ends when the HTTP side closes its end, after committing and
acknowledging what it has.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from relay.core.store.base import StoreUnavailable
from relay.core.store.postgres.connection import Connection, translate_error
from relay.core.store.postgres.writer import commit_items
from relay.core.store.sqlite.hitproc import (
    FrameReader,
    Reply,
    Request,
    acknowledgement,
    encode_frame,
    event_from_fields,
    read_target,
    write_item,
)

MAX_BATCH = 1000  # hits per transaction
MAX_GATHER = 0.005  # seconds a batch takes new hits before it is committed
RECV_SIZE = 1 << 20


class Batcher:
    """The database connection (made again after it broke) and the batch being gathered."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: Connection | None = Connection.connect(url)
        self.requests: list[Request] = []
        self._began = 0.0

    @property
    def full(self) -> bool:
        return len(self.requests) >= MAX_BATCH or time.monotonic() - self._began > MAX_GATHER

    def add(self, requests: list[Request]) -> None:
        if requests and not self.requests:
            self._began = time.monotonic()
        self.requests += requests

    def commit(self) -> list[Reply]:
        """Store the gathered hits in one transaction; a reply for each."""
        requests, self.requests = self.requests, []
        events = [event_from_fields(fields) for _, fields, _ in requests]
        items = [write_item(e, r[2]) for e, r in zip(events, requests, strict=True)]
        try:
            results, _ = commit_items(self._connection(), items)
        except Exception as exc:  # the connection broke, or COMMIT failed: nothing stored
            failure = translate_error(exc)
            if not isinstance(failure, StoreUnavailable):
                failure = StoreUnavailable(f"could not commit: {exc}")
            return [(request_id, False, failure) for request_id, _, _ in requests]
        return [
            (request[0], ok, acknowledgement(event, value) if ok else _portable(value))
            for request, event, (ok, value) in zip(requests, events, results, strict=True)
        ]

    def _connection(self) -> Connection:
        if self._conn is None or not self._conn.usable:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = Connection.connect(self._url)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _portable(exc: Exception) -> Exception:
    """An error the other side can unpickle and understands (commit_items translated it)."""
    if isinstance(exc, ValueError | StoreUnavailable):
        return exc
    return StoreUnavailable(repr(exc))


def serve(sock: socket.socket, url: str, reader: FrameReader) -> None:
    """Gather hits while they come; commit and acknowledge when none is waiting."""
    batch = Batcher(url)
    sock.sendall(encode_frame(("ready", os.getpid())))
    try:
        while True:
            if batch.requests and batch.full:
                data: bytes | None = None
            else:
                data = _receive(sock, wait=not batch.requests)
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


def _receive(sock: socket.socket, wait: bool) -> bytes | None:
    """What has arrived (b"" at the end); None when nothing waits and ``wait`` is false."""
    try:
        return sock.recv(RECV_SIZE, 0 if wait else socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


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
