"""The upstream MTA: maildir:PATH, smtp://, smtp+starttls://, smtps://.

Where aiosmtplib's exceptions end: transaction.py raises them as sendmail
would (after its RSET), and this module turns every one into a
DeliveryOutcome (delivered / temporary / permanent). Only a 5xx answer
to MAIL, RCPT or DATA is permanent: a refused greeting, EHLO, STARTTLS or AUTH
is a problem of the connection (or of our config), and bouncing every message
for it would be worse than letting the queue wait for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib

from relay.core.config import ConfigError, UpstreamConfig
from relay.core.models import DeliveryOutcome, RecipientRefusal
from relay.delivery.maildir import MaildirUpstream
from relay.delivery.transaction import PartlyRefusedDataError, send_mail

log = logging.getLogger("relay.delivery.upstream")

SmtpMode = Literal["smtp", "smtp+starttls", "smtps"]
DEFAULT_PORTS: dict[str, int] = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
IDLE_MAX_SECONDS = 30.0  # servers drop idle clients; reconnecting is cheaper than a failed RSET
# A connection back from its last transaction within this many seconds is reused
# without a RSET round trip (two per message relayed to two recipients).
RSET_AFTER_IDLE_SECONDS = 2.0
QUIT_TIMEOUT = 2.0
_QUEUE_ID = re.compile(r"queued as\s+<?([A-Za-z0-9._@\-]+)>?", re.IGNORECASE)
# Every failure that is about the connection rather than the message.
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError)


class Upstream(Protocol):
    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryOutcome:
        """Deliver data; never raises for a delivery failure."""

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SmtpTarget:
    """Where and how to connect, parsed once from upstream.url."""

    mode: SmtpMode
    host: str
    port: int
    username: str
    password: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.mode}://{host}:{self.port}"


def open_upstream(config: UpstreamConfig, helo_name: str = "") -> Upstream:
    """Raises ConfigError for a URL it cannot use.

    helo_name: the name to greet the upstream with; empty = this host's FQDN.
    """
    url = config.url.strip()
    if url.startswith("maildir:"):
        path = url.removeprefix("maildir:")
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError("upstream.url: maildir: needs a path, e.g. maildir:./outbox")
        return MaildirUpstream(Path(path))
    return SmtpUpstream(config, parse_smtp_url(config), helo_name)


def parse_smtp_url(config: UpstreamConfig) -> SmtpTarget:
    """smtp[+starttls]://[user[:password]@]host[:port] or smtps://...; config credentials win."""
    try:
        parts = urlsplit(config.url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"upstream.url: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(
            f"upstream.url: unknown scheme {scheme!r}; use maildir:PATH, smtp://, "
            "smtp+starttls:// or smtps://"
        )
    if not parts.hostname:
        raise ConfigError("upstream.url: no host, e.g. smtp://mail.example.com:25")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("upstream.url: only scheme://host:port is allowed")
    mode: SmtpMode = scheme  # type: ignore[assignment]
    username = config.username or unquote(parts.username or "")
    password = config.password or unquote(parts.password or "")
    return SmtpTarget(mode, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)


def tls_context_for(config: UpstreamConfig, verify: bool) -> ssl.SSLContext:
    """System CAs (or upstream.ca_file); verification off only when asked for."""
    try:
        context = ssl.create_default_context(cafile=config.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"upstream.ca_file: cannot load {config.ca_file}: {exc}") from exc
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmtpUpstream:
    """A small pool of SMTP connections, reused with RSET, at most max_connections open."""

    def __init__(self, config: UpstreamConfig, target: SmtpTarget, helo_name: str) -> None:
        self.config = config
        self.target = target
        self.helo_name = helo_name
        # tls_verify holds whenever TLS is used, the STARTTLS an smtp:// upstream offers
        # included (a failed check defers the copy). opportunistic_tls is the explicit way
        # to encrypt to such an upstream without checking it (Postfix's "may" level).
        verify = config.tls_verify and not (target.mode == "smtp" and config.opportunistic_tls)
        self._tls = tls_context_for(config, verify)
        self._slots = asyncio.Semaphore(max(1, config.max_connections))
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._closed = False

    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryOutcome:
        if self._closed:
            return DeliveryOutcome("temporary", "upstream is shutting down")
        async with self._slots:
            outcome, stale = await self._send_once(mail_from, rcpt_tos, data, unchecked=True)
            if stale:  # what a RSET would have found: once more on a checked connection
                outcome, _ = await self._send_once(mail_from, rcpt_tos, data, unchecked=False)
            return outcome

    async def _send_once(
        self, mail_from: str, rcpt_tos: Sequence[str], data: bytes, unchecked: bool
    ) -> tuple[DeliveryOutcome, bool]:
        """One try; also says whether it failed on an unchecked connection the server had
        dropped (a connection error, or 421: the server is closing it)."""
        try:
            client, checked = await self._checkout(unchecked)
        except _CONNECTION_ERRORS as exc:
            return DeliveryOutcome("temporary", f"{self.target}: {describe(exc)}"), False
        try:
            outcome, reusable = await self._transaction(client, mail_from, rcpt_tos, data)
        except BaseException:
            client.close()
            raise
        if reusable and client.is_connected and not self._closed:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()
        dropped = not reusable or outcome.reply.startswith("421")
        return outcome, not checked and outcome.status == "temporary" and dropped

    async def close(self) -> None:
        """Say QUIT on idle connections; in-flight sends finish on their own."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client) for client, _ in idle))

    async def _checkout(self, unchecked: bool) -> tuple[aiosmtplib.SMTP, bool]:
        """An idle connection that still answers RSET, or a new one; and whether it was checked.

        unchecked: a connection idle for less than RSET_AFTER_IDLE_SECONDS comes
        without the RSET. Every transaction ends in the initial state (aiosmtplib
        resets after a refusal), so the RSET would only prove the server is there.
        """
        while self._idle:
            client, since = self._idle.pop()
            idle = time.monotonic() - since
            if idle > IDLE_MAX_SECONDS:
                await _quit(client)
                continue
            if not client.is_connected:  # the server hung up while it was idle
                client.close()
                continue
            if unchecked and idle < RSET_AFTER_IDLE_SECONDS:
                return client, False
            try:
                await client.rset()
                return client, True
            except _CONNECTION_ERRORS:
                client.close()
        return await self._connect(), True

    async def _connect(self) -> aiosmtplib.SMTP:
        target = self.target
        if not self.helo_name:  # looked up once, off the loop: a slow resolver must not stall it
            self.helo_name = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            local_hostname=self.helo_name,
            timeout=self.config.timeout,
            use_tls=target.mode == "smtps",
            start_tls={"smtp": None, "smtp+starttls": True, "smtps": False}[target.mode],
            tls_context=self._tls,
            username=target.username or None,
            password=target.password if target.username else None,
        )
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        return client

    async def _transaction(
        self, client: aiosmtplib.SMTP, mail_from: str, rcpt_tos: Sequence[str], data: bytes
    ) -> tuple[DeliveryOutcome, bool]:
        """One MAIL/RCPT/DATA; returns the outcome and whether the connection is reusable."""
        try:
            options = mail_options(client, mail_from, rcpt_tos, data)
            refused, reply = await send_mail(client, mail_from, rcpt_tos, data, options)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            return refused_outcome(exc.recipients), True
        except aiosmtplib.SMTPResponseException as exc:
            apart = refusals(exc.refused) if isinstance(exc, PartlyRefusedDataError) else ()
            outcome = DeliveryOutcome(status_for(exc.code), f"{exc.code} {exc.message}", "", apart)
            return outcome, 400 <= exc.code < 600  # a malformed reply leaves the stream desynced
        except aiosmtplib.SMTPNotSupported as exc:
            return DeliveryOutcome("permanent", str(exc)), True
        except ValueError as exc:  # an address that cannot go on an SMTP command line
            return DeliveryOutcome("permanent", f"unusable address: {exc}"), True
        except _CONNECTION_ERRORS as exc:
            return DeliveryOutcome("temporary", f"{self.target}: {describe(exc)}"), False
        own = tuple(
            RecipientRefusal(address, status_for(code), f"{code} {message}")
            for address, (code, message) in refused.items()
        )
        return DeliveryOutcome("delivered", f"250 {reply}", parse_queue_id(reply), own), True


def mail_options(
    client: aiosmtplib.SMTP, mail_from: str, rcpt_tos: Sequence[str], data: bytes
) -> list[str]:
    """BODY=8BITMIME and SMTPUTF8 when the message needs them."""
    options: list[str] = []
    if not data.isascii() and client.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    if not all(address.isascii() for address in (mail_from, *rcpt_tos)):
        options.append("SMTPUTF8")
    return options


def status_for(code: int) -> Literal["temporary", "permanent"]:
    """5xx is permanent; 4xx and anything malformed may pass."""
    return "permanent" if 500 <= code < 600 else "temporary"


def refusals(
    refused: Sequence[aiosmtplib.SMTPRecipientRefused],
) -> tuple[RecipientRefusal, ...]:
    """Each refused recipient with its own status and reply."""
    return tuple(
        RecipientRefusal(r.recipient, status_for(r.code), f"{r.code} {r.message}") for r in refused
    )


def refused_outcome(refused: Sequence[aiosmtplib.SMTPRecipientRefused]) -> DeliveryOutcome:
    """Every recipient refused: temporary if any refusal was; each one's own answer kept."""
    statuses = {status_for(r.code) for r in refused}
    status: Literal["temporary", "permanent"] = (
        "temporary" if "temporary" in statuses else "permanent"
    )
    reply = "; ".join(dict.fromkeys(f"{r.code} {r.message}" for r in refused))
    return DeliveryOutcome(status, reply, refused=refusals(refused))


def parse_queue_id(reply: str) -> str:
    """Postfix, Exim and most MTAs say "queued as ID"; otherwise unknown."""
    match = _QUEUE_ID.search(reply)
    return match.group(1) if match else ""


def describe(exc: BaseException) -> str:
    """A one-line reason for an operator, never empty."""
    text = str(exc).strip() or type(exc).__name__
    return text.replace("\r", " ").replace("\n", " ")


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit(timeout=QUIT_TIMEOUT)
    except _CONNECTION_ERRORS:
        pass
    finally:
        client.close()
