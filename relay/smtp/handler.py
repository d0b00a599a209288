"""The SMTP handler: every reply code the relay picks, and spooling a message.

aiosmtpd's SMTP class owns the protocol; this object owns the decisions
(who may relay, which addresses are acceptable, what is stored).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from relay.core.config import Config, SmtpUser
from relay.core.metrics import Metrics
from relay.core.models import NewMessage
from relay.core.store import Store
from relay.policy import may_relay, sender_allowed
from relay.smtp.backpressure import QUEUE_FULL, SpoolGuard, refuse
from relay.smtp.followups import copy_specs, record_replies
from relay.smtp.message import (
    BAD_HEADER_BLOCK,
    ParsedMessage,
    author_addresses,
    header_block_clean,
    prepare_message,
    valid_address,
)

log = logging.getLogger("relay.smtp")

NULL_SENDER = "<>"
INTERNAL_ERROR = "451 4.3.0 Internal error; please try again later"


def peer_ip(session: Any) -> str:
    """The client's IP address from aiosmtpd's session.peer ("" when unknown)."""
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""


def auth_user(session: Any) -> str | None:
    """The authenticated user name, or None."""
    if getattr(session, "authenticated", False) and isinstance(session.auth_data, str):
        return session.auth_data
    return None


class RelayHandler:
    """aiosmtpd handler hooks (handle_EHLO, handle_MAIL, handle_RCPT, handle_DATA)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        on_spooled: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.on_spooled = on_spooled
        self.metrics = metrics
        self.spool_guard = SpoolGuard(config.smtp, store, metrics)
        self._users = {user.name: user for user in config.smtp.users}

    def user(self, name: str | None) -> SmtpUser | None:
        return None if name is None else self._users.get(name)

    def may_relay(self, session: Any) -> bool:
        return may_relay(self.config.smtp, peer_ip(session), auth_user(session))

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Advertise what aiosmtpd does not: SIZE (we enforce it), PIPELINING, codes."""
        session.host_name = hostname
        extra = [
            f"250-SIZE {self.config.smtp.max_message_size}",
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
        ]
        kept = [
            r for r in responses[1:-1] if self.config.smtp.users or not r.startswith("250-AUTH")
        ]
        return [responses[0], *extra, *kept, responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.may_relay(session):
            log.info("%s: MAIL refused, not authenticated", peer_ip(session))
            return refuse(self.metrics, "auth_required", "530 5.7.0 Authentication required")
        size = next((o[5:] for o in options if o.startswith("SIZE=")), "0")
        if size.isdigit() and int(size) > self.config.smtp.max_message_size:
            reply = "552 5.3.4 Message size exceeds fixed maximum message size"
            return refuse(self.metrics, "too_big", reply)
        if await self.spool_guard.queue_full():
            return refuse(self.metrics, "queue_full", QUEUE_FULL)
        if address != NULL_SENDER:
            if not valid_address(address):
                return "553 5.1.3 Bad sender address syntax"
            user = self.user(auth_user(session))
            if user is not None and not sender_allowed(user, address):
                log.info("%s: user %s may not send as %s", peer_ip(session), user.name, address)
                reply = "550 5.7.1 Sender address not allowed for this user"
                return refuse(self.metrics, "sender_not_allowed", reply)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.may_relay(session):
            return refuse(self.metrics, "relay_denied", "554 5.7.1 Relay access denied")
        if not valid_address(address):
            return "553 5.1.3 Bad recipient address syntax"
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return refuse(self.metrics, "too_many_recipients", "452 4.5.3 Too many recipients")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or b""
        if not header_block_clean(raw):
            log.info("%s: bare CR, bare LF or NUL in the header block", peer_ip(session))
            return refuse(self.metrics, "malformed_header", BAD_HEADER_BLOCK)
        user = self.user(auth_user(session))
        if user is not None and user.allowed_senders:
            authors = author_addresses(raw)
            if authors is None or not all(sender_allowed(user, a) for a in authors):
                shown = "none or unreadable" if authors is None else ", ".join(authors)
                log.info("%s: user %s may not use From %r", peer_ip(session), user.name, shown)
                reply = "550 5.7.1 From: address not allowed for this user"
                return refuse(self.metrics, "sender_not_allowed", reply)
        if await self.spool_guard.queue_full():
            return refuse(self.metrics, "queue_full", QUEUE_FULL)
        await self.spool_guard.pace()  # flow control: slower while deliveries fall behind
        parsed = prepare_message(
            self.config,
            raw,
            helo=str(session.host_name or ""),
            ip=peer_ip(session),
            auth_user=auth_user(session),
            protocol=server.protocol_name(),
            rcpt_tos=tuple(envelope.rcpt_tos),
        )
        return await self._spool(session, envelope, parsed)

    async def _spool(self, session: Any, envelope: Any, parsed: ParsedMessage) -> str:
        """Store durably, then wake delivery: 250 only after the store said yes."""
        mail_from = "" if envelope.mail_from == NULL_SENDER else str(envelope.mail_from)
        rcpts = tuple(envelope.rcpt_tos)
        msg = NewMessage(
            mail_from=mail_from,
            rcpt_tos=rcpts,
            raw=parsed.raw,
            received_at=time.time(),
            client_addr=peer_ip(session),
            auth_user=auth_user(session),
            sender=parsed.sender or mail_from,
            subject=parsed.subject,
            message_id_header=parsed.message_id,
            decision=parsed.decision,
            in_reply_to=parsed.in_reply_to,
            tags=parsed.tags,
        )
        copies = copy_specs(self.config, parsed.decision, rcpts)
        try:
            message_id = await self.store.spool(msg, copies)
        except Exception:
            log.exception("%s: spooling failed; answered 451", peer_ip(session))
            reply = "451 4.3.0 Temporary storage failure; please try again later"
            return refuse(self.metrics, "storage_error", reply)
        self.spool_guard.spooled(len(copies))
        if self.metrics is not None:
            self.metrics.messages_accepted.inc()
        log.debug(  # server.py logs the transaction's one line, with this reply
            "%s: queued %s from=<%s> rcpts=%d size=%d",
            peer_ip(session),
            message_id,
            mail_from,
            len(rcpts),
            len(parsed.raw),
        )
        try:
            self.on_spooled()
        except Exception:  # the message is safe; delivery will find it on its next scan
            log.exception("on_spooled callback failed")
        await record_replies(self.store, parsed.in_reply_to, rcpts)
        return f"250 2.0.0 Ok: queued as {message_id}"

    async def handle_exception(self, error: Exception) -> str:
        """A bug must never look like a permanent refusal (500 makes senders bounce)."""
        log.error("SMTP session error", exc_info=error)
        return INTERNAL_ERROR
