"""A running SMTP front for tests, and small clients that speak to it."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from relay.core.config import Config, HostPort, SmtpConfig, SmtpUser
from relay.core.metrics import REFUSAL_REASONS, Metrics
from relay.core.models import Copy, Message
from relay.core.store import Store
from relay.smtp.server import SmtpServers

PASSWORD = "correct horse battery staple"
OUTSIDE = (ipaddress.ip_network("10.0.0.0/8"),)  # loopback clients are not in it


@dataclass(frozen=True)
class Certs:
    """A trustme server certificate (files) and a client context that trusts it."""

    cert: str
    key: str
    client: ssl.SSLContext


@dataclass
class Relay:
    """A started SMTP front and what it spooled."""

    servers: SmtpServers
    store: Store
    config: Config
    woken: list[float] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def port(self) -> int:
        return self.servers.addresses()[0][1]

    @property
    def tls_port(self) -> int:
        return self.servers.addresses(implicit_tls=True)[0][1]

    async def spooled(self) -> list[tuple[Message, bytes, list[Copy]]]:
        """Every spooled message, oldest first, with its raw bytes and copies."""
        summaries, _next = await self.store.list_messages(limit=100)
        copies = await self.store.due_copies(time.time() + 3600, 1000)
        result = []
        for summary in reversed(summaries):
            msg = summary.message
            raw = await self.store.load_raw(msg.id)
            result.append((msg, raw, [c for c in copies if c.message_id == msg.id]))
        return result


def refusals(metrics: Metrics) -> dict[str, int]:
    """relay_messages_refused_total by reason, the reasons counted at least once."""
    counts = {
        reason: metrics.registry.get_sample_value(
            "relay_messages_refused_total", {"reason": reason}
        )
        for reason in REFUSAL_REASONS
    }
    return {reason: int(count) for reason, count in counts.items() if count}


def smtp_config(**overrides: Any) -> SmtpConfig:
    base = SmtpConfig(listen=(HostPort("127.0.0.1", 0),), hostname="relay.test")
    return replace(base, **overrides)


def alice(password_hash: str, *senders: str) -> SmtpUser:
    return SmtpUser(name="alice", password_hash=password_hash, allowed_senders=senders)


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Blocking clients (smtplib) run in a thread: the server shares this loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class LineClient:
    """A bare SMTP client over a socket: sends exactly the bytes given (pipelining,
    long lines, 8-bit data) and reads replies one at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> LineClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        assert (await client.reply()).startswith("220 ")
        return client

    @classmethod
    async def greeted(cls, port: int) -> LineClient:
        """Connected and past EHLO (its 250 checked): a session ready for MAIL."""
        client = await cls.connect(port)
        assert (await client.command("EHLO client.test")).startswith("250")
        return client

    async def reply(self) -> str:
        """One complete (possibly multi-line) reply; '' when the server closed."""
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            if not line:
                return "\n".join(lines)
            text = line.decode().rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


StartRelay = Callable[..., Awaitable[Relay]]
