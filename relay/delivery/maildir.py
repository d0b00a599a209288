"""The `maildir:PATH` upstream: each copy becomes a `.eml` file a person can open.

Files are written the Maildir way (PATH/tmp, fsync, rename into PATH/new,
fsync the directory), so a reader never sees a half-written message and a
crash after "delivered" loses nothing. The bytes are written exactly as relayed,
after the lines Postfix's local delivery prepends (Return-Path, X-Original-To,
Delivered-To), one file per recipient, so the copies in the folder can be told apart.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from relay.core.config import ConfigError
from relay.core.files import fsync_directory
from relay.core.models import DeliveryOutcome


class MaildirUpstream:
    """Delivers into a Maildir whose message files end in `.eml`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._host = _safe_hostname()
        try:
            _make_dirs(path)
        except OSError as exc:
            raise ConfigError(f"upstream.url: cannot create maildir {path}: {exc}") from exc

    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryOutcome:
        """Write one file per recipient; a disk error is temporary (space may come back)."""
        try:
            names = await asyncio.to_thread(self._write_all, mail_from, rcpt_tos, data)
        except OSError as exc:
            return DeliveryOutcome("temporary", f"maildir {self.path}: {exc}")
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        return DeliveryOutcome(
            "delivered", f"written to {self.path / 'new' / names[0]}{more}", names[0]
        )

    async def close(self) -> None:
        """Nothing is held open between messages."""

    def _write_all(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> list[str]:
        """All the recipients' files or none: a failure takes back those already written."""
        names: list[str] = []
        try:
            for rcpt in rcpt_tos or [""]:
                names.append(self._write(delivery_headers(mail_from, rcpt, data) + data))
        except BaseException:
            for name in names:
                (self.path / "new" / name).unlink(missing_ok=True)
            raise
        return names

    def _write(self, data: bytes) -> str:
        _make_dirs(self.path)
        name = self._unique_name()
        tmp = self.path / "tmp" / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, self.path / "new" / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_directory(self.path / "new")
        return name

    def _unique_name(self) -> str:
        """Maildir-style unique name: time, microseconds, pid, random, host."""
        now = time.time()
        seconds = int(now)
        micros = int((now - seconds) * 1_000_000)
        rand = secrets.token_hex(6)
        return f"{seconds}.M{micros}P{os.getpid()}R{rand}.{self._host}.eml"


def delivery_headers(mail_from: str, rcpt: str, data: bytes) -> bytes:
    """What Postfix's local(8) prepends to a delivered message: the envelope sender and
    the recipient (X-Original-To and Delivered-To are the same here: no aliases), with
    the message's own line ending."""
    lines = [f"Return-Path: <{_one_line(mail_from)}>"]
    if rcpt:
        lines += [f"X-Original-To: {_one_line(rcpt)}", f"Delivered-To: {_one_line(rcpt)}"]
    newline = data.find(b"\n")
    end = "\n" if newline > 0 and data[newline - 1 : newline] != b"\r" else "\r\n"
    return "".join(line + end for line in lines).encode("utf-8", "surrogateescape")


def _one_line(address: str) -> str:
    """Addresses were checked at MAIL and RCPT; a line break must still never get in."""
    return "".join(ch for ch in address if ch >= " " and ch != "\x7f")


def _make_dirs(path: Path) -> None:
    """The maildir and its tmp/new/cur are created 0700: copies are private mail."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, exist_ok=True)


def _safe_hostname() -> str:
    """The host part of a Maildir name may not contain '/' or ':'."""
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072")
