"""Real upstreams on loopback for the delivery tests.

An aiosmtpd sink (optionally with TLS, STARTTLS or AUTH) whose replies a test
can script, and a tiny hand-written SMTP server for the misbehaviours aiosmtpd
will not produce: garbage replies, hanging up mid-DATA, never answering.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    session: int  # id of the SMTP session (one per connection)


@dataclass
class ScriptedHandler:
    """Collects deliveries; replies listed in data_replies/rcpt_replies are used first."""

    messages: list[Delivered] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_options: list[list[str]] = field(default_factory=list)
    mail_replies: list[str] = field(default_factory=list)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_options.append(list(options))
        if self.mail_replies:
            return self.mail_replies.pop(0)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            return self.data_replies.pop(0)
        content = bytes(envelope.original_content or b"")
        self.messages.append(
            Delivered(str(envelope.mail_from), list(envelope.rcpt_tos), content, id(session))
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.messages)}"

    async def received(self, count: int) -> list[Delivered]:
        """The deliveries, once there are at least `count` (15 s at most)."""
        async with asyncio.timeout(15):
            while True:
                if len(self.messages) >= count:
                    return self.messages
                await asyncio.sleep(0.05)


SinkFactory = Callable[..., tuple[ScriptedHandler, int]]


@dataclass(frozen=True)
class Tls:
    server_context: ssl.SSLContext
    ca_file: Path


def password_checker(name: str, password: str) -> Callable[..., AuthResult]:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == name.encode()
            and (data.password == password.encode())
        )
        return AuthResult(success=ok, handled=False)

    return authenticate


async def misbehave(mode: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Speak just enough SMTP to reach the point where mode says to misbehave."""
    writer.write(b"garbage without a code\r\n" if mode == "garbage-greeting" else b"220 fake\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if mode == "silent" and verb == b"MAIL":
            await reader.read()  # never answer
            return
        if mode == "garbage" and verb == b"MAIL":
            writer.write(b"ok sure whatever\r\n")
        elif verb == b"EHLO":
            writer.write(b"250-fake\r\n250 8BITMIME\r\n")
        elif verb == b"DATA":
            writer.write(b"354 go ahead\r\n")
            await writer.drain()
            if mode == "hangup":
                await reader.read(20)  # some of the message, then drop the line
                writer.close()
                return
            while (await reader.readline()) not in (b".\r\n", b""):
                pass
            writer.write(b"250 ok\r\n")
        elif verb == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()
