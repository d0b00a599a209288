"""The event writer process: tracking hits group-committed outside the HTTP process.

Every sqlite3 call releases the GIL and must win it back, so a writer
thread inside the HTTP process fights its event loop for one core and both
lose (measured: SQL twice as slow per event, a commit cycle of ~13 ms for
25 events). Here the SQL runs in a process of its own: the HTTP side sends
hits over a socketpair, this loop runs them as they arrive in ONE open
transaction (sqlite/writer.run_items: a multi-row INSERT for plain hits, a
SAVEPOINT per op otherwise), commits with synchronous=FULL (the WAL is
fsync'd before COMMIT returns) as soon as nothing more is waiting, and
only then acknowledges each hit with the events stored. An acknowledged
hit is therefore durable, as with the in-process writer; a hit not yet
acknowledged when this process dies is sent again through the in-process
writer (store/sqlite/hitclient.py).

Frames on the socket: a 4-byte big-endian length, then a pickle. The
socketpair is private to the relay and its own child, so pickle is safe.
Requests: ``[(request_id, event_fields(event), relabel_client), ...]``; replies:
``[(request_id, ok, id_or_events_or_error), ...]`` (the id alone when the hit
was stored as sent: see ``acknowledgement``); the first frame from here is
``("ready", pid)``. The process ignores SIGINT and SIGTERM: it ends when
the HTTP side closes its end, after committing and acknowledging what it
has, so a stop never cuts a batch in half.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import pickle
import signal
import socket
import sqlite3
import struct
import time
from typing import Any

from relay.core.models import Event, event_from
from relay.core.store.base import StoreUnavailable
from relay.core.store.batching import Bulk, WriteItem
from relay.core.store.sql import hits, writes
from relay.core.store.sqlite import schema
from relay.core.store.sqlite.writer import run_items

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024
RECV_SIZE = 1 << 20
BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 1000  # hits per transaction
MAX_OPEN = 0.005  # seconds a transaction takes new hits before it is committed

EVENT_FIELDS = tuple(field.name for field in dataclasses.fields(Event))
# An event travels as its fields in this order: a pickled dataclass names every
# field of every hit, which cost both processes more than the values themselves.
event_fields = operator.attrgetter(*EVENT_FIELDS)

Request = tuple[int, tuple[Any, ...], bool]  # request id, event_fields(event), relabel_client
Reply = tuple[int, bool, Any]


def encode_frame(payload: object) -> bytes:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


class FrameReader:
    """Splits a byte stream into decoded frames."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        self._buffer += data
        frames: list[Any] = []
        start = 0
        while len(self._buffer) - start >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer, start)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes")
            end = start + HEADER.size + size
            if end > len(self._buffer):
                break
            frames.append(pickle.loads(self._buffer[start + HEADER.size : end]))  # noqa: S301
            start = end
        del self._buffer[:start]
        return frames


def event_from_fields(fields: tuple[Any, ...]) -> Event:
    """The event ``event_fields`` took apart, without re-running the dataclass __init__."""
    return event_from(dict(zip(EVENT_FIELDS, fields, strict=True)))


def write_item(event: Event, relabel_client: bool) -> WriteItem:
    """The same op the in-process store runs for Store.record_hit (sqlite.py)."""
    single = event.kind == "open" and not relabel_client
    return WriteItem(
        functools.partial(hits.record_hit, event=event, relabel_client=relabel_client),
        single_statement=single,
        bulk=Bulk(writes.insert_hits, event) if single else None,
    )


class OpenBatch:
    """One transaction that takes hits as they arrive and commits when none is waiting.

    Inserting while the HTTP side is still answering and reading overlaps the
    SQL with its work: when the socket falls quiet only the COMMIT (the fsync)
    is left before the acknowledgements go out. A steady stream is cut every
    MAX_OPEN seconds or MAX_BATCH hits, so no hit waits behind it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._requests: list[Request] = []
        self._events: list[Event] = []
        self._results: list[tuple[bool, Any]] = []
        self._began = 0.0

    @property
    def open(self) -> bool:
        return bool(self._requests)

    @property
    def full(self) -> bool:
        return len(self._requests) >= MAX_BATCH or time.monotonic() - self._began > MAX_OPEN

    def add(self, requests: list[Request]) -> list[Reply]:
        """Run the hits in the open transaction; returns replies only if it had to give up."""
        if not requests:
            return []
        first = not self._requests
        events = [event_from_fields(fields) for _, fields, _ in requests]
        self._requests += requests
        self._events += events
        try:
            if first:
                self._conn.execute("BEGIN IMMEDIATE")
                self._began = time.monotonic()
            items = [write_item(e, r[2]) for e, r in zip(events, requests, strict=True)]
            self._results += run_items(self._conn, items)
        except Exception as exc:  # the transaction is broken: nothing of it will be stored
            return self._fail(exc)
        return []

    def commit(self) -> list[Reply]:
        """Make everything added durable (synchronous=FULL), then say what each hit became."""
        try:
            self._conn.execute("COMMIT")
        except Exception as exc:
            return self._fail(exc)
        replies = [
            (request[0], ok, acknowledgement(event, value) if ok else _portable(value))
            for request, event, (ok, value) in zip(
                self._requests, self._events, self._results, strict=True
            )
        ]
        self._requests, self._events, self._results = [], [], []
        return replies

    def _fail(self, exc: Exception) -> list[Reply]:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        failure = StoreUnavailable(f"could not commit: {exc}")
        replies: list[Reply] = [(request_id, False, failure) for request_id, _, _ in self._requests]
        self._requests, self._events, self._results = [], [], []
        return replies


def acknowledgement(sent: Event, stored: list[Event]) -> int | list[Event]:
    """The stored event's id alone when the store kept the hit as it was sent.

    That is nearly every hit: the HTTP side has the event already, and
    unpickling whole events back cost it more than the rest of the ack.
    hits.record_hit changes a hit only in its id and recipient, so the
    events themselves come back only when there is more to say: an inferred
    open, or a recipient erased since the HTTP side cached the copy.
    """
    if len(stored) == 1:
        event = stored[0]
        if event.id is not None and event.recipient == sent.recipient:
            return event.id
    return stored


def _portable(exc: Exception) -> Exception:
    """An error the other side can unpickle and understands (run_items already translated)."""
    if isinstance(exc, ValueError | StoreUnavailable):
        return exc
    return StoreUnavailable(repr(exc))


def serve(sock: socket.socket, path: str) -> None:
    """Add hits as they come; commit and acknowledge whenever none is waiting."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    schema.configure(conn, BUSY_TIMEOUT_MS)
    # A multi-row INSERT inside a transaction needs a statement journal: in a
    # temporary file, that is an open, unlink and close per commit (strace).
    conn.execute("PRAGMA temp_store=MEMORY")
    reader = FrameReader()
    batch = OpenBatch(conn)
    sock.sendall(encode_frame(("ready", os.getpid())))
    while True:
        if batch.open and batch.full:
            data: bytes | None = None
        else:
            data = receive(sock, wait=not batch.open)
        if data is None:  # quiet (or full): make the open batch durable and answer
            sock.sendall(encode_frame(batch.commit()))
            continue
        if not data:
            break
        requests: list[Request] = [r for frame in reader.feed(data) for r in frame]
        failed = batch.add(requests)
        if failed:
            sock.sendall(encode_frame(failed))
    if batch.open:
        sock.sendall(encode_frame(batch.commit()))
    conn.close()


def receive(sock: socket.socket, wait: bool) -> bytes | None:
    """What has arrived (b"" at the end); None when nothing waits and ``wait`` is false."""
    try:
        return sock.recv(RECV_SIZE, 0 if wait else socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


def read_target(sock: socket.socket, reader: FrameReader) -> str:
    """The first frame from the HTTP side: the store's file (or URL) to write to."""
    while True:
        data = sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionResetError("the HTTP side closed before naming the store")
        frames = reader.feed(data)
        if frames:
            target = frames[0]
            if len(frames) > 1 or not isinstance(target, str):
                raise ValueError("expected the store's location first, alone")
            return target


def main(argv: list[str]) -> int:
    """``[fd]``: the socket inherited from hitclient; the store's file is its first frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with socket.socket(fileno=int(argv[0])) as sock:
        try:
            serve(sock, read_target(sock, FrameReader()))
        except (BrokenPipeError, ConnectionResetError):
            return 1  # the HTTP process is gone; what was committed stays
    return 0
