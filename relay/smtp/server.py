"""aiosmtpd wiring: plain/STARTTLS and implicit-TLS listeners on the caller's loop.

RelaySMTP keeps aiosmtpd's protocol engine and changes what a relay needs:
DATA read in blocks (long lines, our own size limit), AUTH verified off the
event loop and throttled, relay refusals at RCPT, and a 451 for any bug. Its
replies come from replies.py, and its refusals are counted there, as the
handler's are.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import logging
import ssl
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Session, syntax

from relay.core.config import Config, HostPort, SmtpConfig
from relay.core.limits import ConnectionLimits, RateLimitedLog, peer_address
from relay.core.metrics import Metrics
from relay.core.store import Store
from relay.core.tls import server_context
from relay.smtp import replies
from relay.smtp.addresses import plain_path
from relay.smtp.auth import AuthThrottle, ThrottleSettings
from relay.smtp.chunked import read_data
from relay.smtp.handler import RelayHandler
from relay.smtp.replies import refuse
from relay.smtp.session import peer_ip

log = logging.getLogger("relay.smtp")

READ_LIMIT = 64 * 1024  # StreamReader limit: DATA block size and longest command line read
COMMAND_LIMIT = 512
CLOSE_GRACE = 30.0  # seconds close() waits for sessions in DATA
BACKLOG = 1024  # a burst of connects waits in the kernel instead of being reset
CALL_LIMITS = {"*": 1_000_000, "EHLO": 50, "HELO": 50, "AUTH": 20, "STARTTLS": 5, "NOOP": 1000}


class RelaySession(Session):
    """aiosmtpd's Session without the deprecated login_data warning on every AUTH."""

    @property
    def login_data(self) -> Any:
        return None

    @login_data.setter
    def login_data(self, value: Any) -> None:
        pass


@dataclass
class Sessions:
    """The open connections of all listeners, and which of them are inside DATA."""

    limits: ConnectionLimits
    open: set[RelaySMTP] = field(default_factory=set)
    in_data: set[RelaySMTP] = field(default_factory=set)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    refusals: RateLimitedLog = field(default_factory=lambda: RateLimitedLog(log))

    def enter_data(self, session: RelaySMTP) -> None:
        self.in_data.add(session)
        self.idle.clear()

    def leave_data(self, session: RelaySMTP) -> None:
        self.in_data.discard(session)
        if not self.in_data:
            self.idle.set()


class RelaySMTP(SMTP):
    """One SMTP connection."""

    line_length_limit = READ_LIMIT

    def __init__(
        self,
        handler: RelayHandler,
        *,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool,
        throttle: AuthThrottle,
        sessions: Sessions,
    ) -> None:
        # aiosmtpd keeps these limits in a class-level dict shared by all connections.
        self.command_size_limits = collections.defaultdict(lambda: COMMAND_LIMIT)
        config = handler.config.smtp
        super().__init__(
            handler,
            data_size_limit=None,  # SIZE is advertised and enforced by us (5.3.4 codes)
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=config.hostname,
            ident="ESMTP ready",
            tls_context=None if implicit_tls else tls_context,
            auth_require_tls=config.require_tls_for_auth and not implicit_tls,
            command_call_limit=CALL_LIMITS,
            timeout=config.command_timeout,
            loop=asyncio.get_running_loop(),
        )
        self.relay_config: SmtpConfig = config
        self.address: str | None = None  # the client's, once admitted
        self.refused = False  # over smtp.max_sessions(_per_address): answered 421, closed
        self.deadline: asyncio.TimerHandle | None = None  # smtp.session_timeout
        self.spooling = False  # the handler is storing a message: its answer must go out
        self.implicit_tls = implicit_tls
        self.throttle = throttle
        self.sessions = sessions
        self.auth_failures = 0

    def _create_session(self) -> Session:
        return RelaySession(self.loop)

    def protocol_name(self) -> str:
        """ESMTP, ESMTPS, ESMTPA, ESMTPSA (RFC 3848) for the Received header.

        A method, not a property: aiosmtpd's inspect.getmembers() would evaluate it.
        """
        session = self.session
        name = "ESMTP" if session is None or session.extended_smtp else "SMTP"
        if self.implicit_tls or self._tls_protocol is not None:
            name += "S"
        return name + ("A" if session is not None and session.authenticated else "")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.address is None:  # a new connection (STARTTLS calls this again)
            address = peer_address(transport)
            refusal = self.sessions.limits.admit(address)
            if refusal is not None:
                self.sessions.refusals.warning(
                    "refused", f"SMTP connection from {address} refused: {refusal}"
                )
                handler: RelayHandler = self.event_handler
                reply = refuse(
                    handler.metrics,
                    replies.SESSION_LIMIT,
                    host=self.relay_config.hostname,
                    why=refusal,
                )
                if isinstance(transport, asyncio.WriteTransport):
                    transport.write(f"{reply}\r\n".encode())
                transport.close()
                self.refused = True
                return
            self.address = address
            self.deadline = self.loop.call_later(
                self.relay_config.session_timeout, self._session_over
            )
        super().connection_made(transport)
        self.sessions.open.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:  # nothing was set up
            return
        if self.deadline is not None:
            self.deadline.cancel()
        if self.address is not None:
            self.sessions.limits.release(self.address)
            self.address = None
        self.sessions.open.discard(self)
        self.sessions.leave_data(self)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        """smtp.command_timeout: say why before hanging up, as Postfix does (aiosmtpd
        only closes)."""
        self._hang_up("command-timeout", "timeout exceeded")

    def _session_over(self) -> None:
        """smtp.session_timeout: however busy, a session ends (a message being spooled
        finishes first, so its 250 is never lost)."""
        if self.spooling:
            self.deadline = self.loop.call_later(1.0, self._session_over)
            return
        self.deadline = None
        self._hang_up("session-timeout", "session time limit exceeded")

    def _hang_up(self, kind: str, why: str) -> None:
        self.sessions.refusals.warning(kind, f"SMTP session from {self.address}: {why}")
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            reply = replies.HANG_UP.format(host=self.relay_config.hostname, why=why)
            transport.write(f"{reply}\r\n".encode())
        if transport is not None:
            transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parser, with a one-regex fast path for plain addresses."""
        plain = plain_path(arg)
        if plain is None or (
            self.local_part_limit and len(plain[0].split("@")[0]) > self.local_part_limit
        ):
            return super()._getaddr(arg)
        return plain

    async def smtp_RCPT(self, arg: str | None) -> None:
        """A pipelined RCPT after a refused MAIL still gets a relay refusal, not 503."""
        assert self.session is not None
        handler: RelayHandler = self.event_handler
        if self.session.host_name and not handler.may_relay(self.session):
            await self.push(refuse(handler.metrics, replies.RELAY_DENIED))
            return
        await super().smtp_RCPT(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(str(replies.NEED_RCPT))
            return
        if arg:
            await self.push(str(replies.DATA_SYNTAX))
            return
        self.sessions.enter_data(self)
        try:
            await self.push(str(replies.START_DATA))
            status = await self._receive_and_handle()
            await self.push(status)
        finally:
            self.sessions.leave_data(self)

    async def _receive_and_handle(self) -> str:
        """Read the data (bounded), then let the handler decide (and intake spool it)."""
        limit = self.relay_config.max_message_size
        result = await read_data(self._reader, limit, self._reset_timeout)
        try:
            if result.too_big:
                log.info("%s: message over %d octets refused", peer_ip(self.session), limit)
                handler: RelayHandler = self.event_handler
                return refuse(handler.metrics, replies.TOO_BIG)
            assert self.envelope is not None
            self.envelope.content = result.content
            self.envelope.original_content = result.content
            self.spooling = True
            try:
                status = await self._call_handler_hook("DATA")
            finally:
                self.spooling = False
            reply = str(replies.ACCEPTED) if status is MISSING else str(status)
            self._log_transaction(len(result.content), reply)
            return reply
        finally:
            self.envelope = self._create_envelope()

    def _log_transaction(self, size: int, reply: str) -> None:
        """One line per transaction, accepted or not (Postfix writes several; one is enough
        to follow a message: the queue id is in the reply)."""
        envelope, session = self.envelope, self.session
        assert envelope is not None
        user = f" user={session.auth_data}" if session is not None and session.auth_data else ""
        log.info(
            "client=%s%s from=<%s> to=%s size=%d reply=%r",
            peer_ip(session),
            user,
            envelope.mail_from or "",
            ",".join(f"<{r}>" for r in envelope.rcpt_tos),
            size,
            reply,
        )

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        blob = await self._auth_argument(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push(str(replies.AUTH_UNSPLITTABLE))
            return AuthResult(success=False, handled=True)
        return await self._verify(parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        login = await self._auth_argument(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(password, bytes)
        return await self._verify(login, password)

    async def _auth_argument(self, args: list[str], challenge: str) -> bytes | None:
        """The initial response, or the answer to a challenge; None once answered."""
        if len(args) == 1:
            answer = await self.challenge_auth(challenge)
            return answer if isinstance(answer, bytes) else None
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self.push(str(replies.AUTH_NOT_BASE64))
            return None

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        """235, 535, or 454 past the failure budget, all after the same delay (auth.py);
        421 and close after N failures in one session."""
        ip = peer_ip(self.session)
        attempt = await self.throttle.attempt(self.relay_config, ip, login, password)
        if attempt.user is not None:
            log.info("%s: authenticated as %s", ip, attempt.user)
            return AuthResult(success=True, auth_data=attempt.user)
        handler: RelayHandler = self.event_handler
        if handler.metrics is not None:
            handler.metrics.auth_failed(attempt.outcome)
        self.auth_failures += 1
        log.warning(
            "%s: AUTH failed, %s (%d in this session)", ip, attempt.outcome, self.auth_failures
        )
        if self.auth_failures >= self.throttle.settings.failures_per_connection:
            await self.push(str(replies.AUTH_TOO_MANY_IN_SESSION))
            assert self.transport is not None
            self.transport.close()
            return AuthResult(success=False, handled=True)
        if attempt.outcome != "bad_credentials":
            await self.push(str(replies.AUTH_BUDGET_USED))
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)


class SmtpServers:
    """The listening sockets of the SMTP front."""

    def __init__(
        self,
        servers: list[tuple[asyncio.Server, bool]],
        sessions: Sessions,
        handler: RelayHandler | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self._servers = servers
        self._sessions = sessions
        self._handler = handler
        self._context = context

    def reload(self, config: Config) -> None:
        """SIGHUP: new sessions get the new policy (users, networks, limits, tracking policy);
        the certificate is read again into the same context, so new handshakes use it.
        Raises OSError or ssl.SSLError for an unusable certificate (nothing changed then)."""
        if self._context is not None and config.smtp.tls_cert:
            self._context.load_cert_chain(config.smtp.tls_cert, config.smtp.tls_key or None)
        if self._handler is not None:
            self._handler.config = config

    def addresses(self, implicit_tls: bool = False) -> list[tuple[str, int]]:
        """Where the plain (or implicit-TLS) listeners are bound: (host, port)."""
        return [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for server, tls in self._servers
            if tls == implicit_tls
            for sock in server.sockets
        ]

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Stop accepting; let sessions in DATA finish (at most grace seconds), then
        the replies their messages record."""
        for server, _tls in self._servers:
            server.close()
        if self._sessions.in_data:
            try:
                await asyncio.wait_for(self._sessions.idle.wait(), grace)
            except TimeoutError:
                log.warning("%d sessions still in DATA; closing", len(self._sessions.in_data))
        for session in list(self._sessions.open):
            if session.transport is not None:
                session.transport.close()
        for server, _tls in self._servers:
            await server.wait_closed()
        if self._handler is not None:
            await self._handler.intake.close()


def tls_context(config: SmtpConfig) -> ssl.SSLContext | None:
    """The server TLS context, or None without a certificate (OSError/SSLError if unusable)."""
    return server_context(config.tls_cert, config.tls_key)


async def start_smtp(
    config: Config,
    store: Store,
    on_spooled: Callable[[], None],
    *,
    throttle: AuthThrottle | None = None,
    metrics: Metrics | None = None,
    reuse_port: bool = False,
) -> SmtpServers:
    """Bind every listener; OSError (port in use) and ssl errors propagate to the CLI.

    reuse_port: SO_REUSEPORT, so that smtp.workers processes listen on the same addresses
    and the kernel spreads new connections over them (relay/workers.py)."""
    context = tls_context(config.smtp)
    if config.smtp.implicit_tls_listen and context is None:
        raise OSError("smtp.implicit_tls_listen needs smtp.tls_cert and smtp.tls_key")
    handler = RelayHandler(config, store, on_spooled, metrics)
    sessions = Sessions(
        ConnectionLimits(config.smtp.max_sessions, config.smtp.max_sessions_per_address)
    )
    auth_throttle = throttle or AuthThrottle(ThrottleSettings.from_config(config.smtp))
    loop = asyncio.get_running_loop()
    servers: list[tuple[asyncio.Server, bool]] = []

    def factory(implicit: bool) -> Callable[[], RelaySMTP]:
        return lambda: RelaySMTP(
            handler,
            tls_context=context,
            implicit_tls=implicit,
            throttle=auth_throttle,
            sessions=sessions,
        )

    wanted: list[tuple[HostPort, bool]] = [(a, False) for a in config.smtp.listen]
    wanted += [(a, True) for a in config.smtp.implicit_tls_listen]
    try:
        for address, implicit in wanted:
            server = await loop.create_server(
                factory(implicit),
                address.host,
                address.port,
                ssl=context if implicit else None,
                backlog=BACKLOG,
                reuse_port=reuse_port or None,
            )
            servers.append((server, implicit))
    except BaseException:
        for server, _tls in servers:
            server.close()
        raise
    return SmtpServers(servers, sessions, handler, context)
