"""The SMTP handler: the relay's decisions, one hook per SMTP step.

aiosmtpd's SMTP class owns the protocol; this object decides at each step
whether to go on (who may relay, which addresses are acceptable, whether the
queue has room) and picks the reply from replies.py. What an accepted message
becomes (spool, copies, replies) is intake.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from relay.core.config import Config, SmtpUser
from relay.core.metrics import Metrics
from relay.core.store import Store
from relay.policy import may_relay, sender_allowed
from relay.smtp import replies
from relay.smtp.backpressure import SpoolGuard
from relay.smtp.intake import Intake
from relay.smtp.message import author_addresses, header_block_clean, valid_address
from relay.smtp.replies import refuse
from relay.smtp.session import NULL_SENDER, auth_user, peer_ip

log = logging.getLogger("relay.smtp")


class RelayHandler:
    """aiosmtpd handler hooks (handle_EHLO, handle_MAIL, handle_RCPT, handle_DATA)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        on_spooled: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.spool_guard = SpoolGuard(config.smtp, store, metrics)
        self.intake = Intake(store, self.spool_guard, on_spooled, metrics)
        self.config = config

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """SIGHUP sets it (SmtpServers.reload): users and their allowed_senders, and the
        queue's limit and flow delay, too."""
        self._config = config
        self._users = {user.name: user for user in config.smtp.users}
        self.spool_guard.configure(config.smtp)

    def user(self, name: str | None) -> SmtpUser | None:
        return None if name is None else self._users.get(name)

    def may_relay(self, session: Any) -> bool:
        return may_relay(self.config.smtp, peer_ip(session), auth_user(session))

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        """Advertise what aiosmtpd does not, and AUTH only with users to log in as."""
        session.host_name = hostname
        extra = replies.ehlo_extensions(self.config.smtp.max_message_size)
        kept = [
            r for r in responses[1:-1] if self.config.smtp.users or not r.startswith("250-AUTH")
        ]
        return [responses[0], *extra, *kept, responses[-1]]

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.may_relay(session):
            log.info("%s: MAIL refused, not authenticated", peer_ip(session))
            return refuse(self.metrics, replies.AUTH_REQUIRED)
        size = next((o[5:] for o in options if o.startswith("SIZE=")), "0")
        if size.isdigit() and int(size) > self.config.smtp.max_message_size:
            return refuse(self.metrics, replies.TOO_BIG)
        if await self.spool_guard.queue_full():
            return refuse(self.metrics, replies.QUEUE_FULL)
        if address != NULL_SENDER:
            if not valid_address(address):
                return refuse(self.metrics, replies.BAD_SENDER)
            user = self.user(auth_user(session))
            if user is not None and not sender_allowed(user, address):
                log.info("%s: user %s may not send as %s", peer_ip(session), user.name, address)
                return refuse(self.metrics, replies.SENDER_NOT_ALLOWED)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if not self.may_relay(session):
            return refuse(self.metrics, replies.RELAY_DENIED)
        if not valid_address(address):
            return refuse(self.metrics, replies.BAD_RECIPIENT)
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return refuse(self.metrics, replies.TOO_MANY_RECIPIENTS)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """250 only once intake stored the message (SPEC 4)."""
        raw = envelope.original_content or b""
        if not header_block_clean(raw):
            log.info("%s: bare CR, bare LF or NUL in the header block", peer_ip(session))
            return refuse(self.metrics, replies.BAD_HEADER_BLOCK)
        user = self.user(auth_user(session))
        if user is not None and user.allowed_senders:
            authors = author_addresses(raw)
            if authors is None or not all(sender_allowed(user, a) for a in authors):
                shown = "none or unreadable" if authors is None else ", ".join(authors)
                log.info("%s: user %s may not use From %r", peer_ip(session), user.name, shown)
                return refuse(self.metrics, replies.FROM_NOT_ALLOWED)
        if await self.spool_guard.queue_full():
            return refuse(self.metrics, replies.QUEUE_FULL)
        message_id = await self.intake.spool(self.config, server, session, envelope)
        if message_id is None:
            return refuse(self.metrics, replies.STORAGE_FAILURE)
        return replies.QUEUED.format(message_id=message_id)

    async def handle_exception(self, error: Exception) -> str:
        """A bug must never look like a permanent refusal (500 makes senders bounce)."""
        log.error("SMTP session error", exc_info=error)
        return str(replies.INTERNAL_ERROR)
