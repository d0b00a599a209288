"""Intake: what happens to a message the handler accepted at DATA.

Prepare it (Received, Message-ID, the tracking decision), spool it with its
copies in one store write, count it, wake delivery. The 250 waits for that
one commit and nothing else (SPEC 4): the replies the message records
(followups.record_replies) are a second write, started once the spool
committed and not waited for; close() waits for those still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from relay.core.config import Config
from relay.core.metrics import Metrics
from relay.core.models import NewMessage
from relay.core.store import Store
from relay.smtp.backpressure import SpoolGuard
from relay.smtp.followups import copy_specs, record_replies
from relay.smtp.message import read_submission
from relay.smtp.session import NULL_SENDER, auth_user, peer_ip

log = logging.getLogger("relay.smtp")


class Intake:
    """Spools accepted messages; one per SMTP front, shared by its sessions."""

    def __init__(
        self,
        store: Store,
        spool_guard: SpoolGuard,
        on_spooled: Callable[[], None],
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.spool_guard = spool_guard
        self.on_spooled = on_spooled
        self.metrics = metrics
        self._followups: set[asyncio.Task[int]] = set()

    async def spool(self, config: Config, server: Any, session: Any, envelope: Any) -> str | None:
        """The queue id once the message is durably stored; None (logged) when the
        store failed, so nothing was stored."""
        await self.spool_guard.pace()  # flow control: slower while deliveries fall behind
        ip = peer_ip(session)
        rcpts = tuple(envelope.rcpt_tos)
        parsed = read_submission(
            config,
            envelope.original_content or b"",
            helo=str(session.host_name or ""),
            ip=ip,
            auth_user=auth_user(session),
            protocol=server.protocol_name(),
            rcpt_tos=rcpts,
        )
        mail_from = "" if envelope.mail_from == NULL_SENDER else str(envelope.mail_from)
        msg = NewMessage(
            mail_from=mail_from,
            rcpt_tos=rcpts,
            raw=parsed.raw,
            received_at=time.time(),
            client_addr=ip,
            auth_user=auth_user(session),
            sender=parsed.sender or mail_from,
            subject=parsed.subject,
            message_id_header=parsed.message_id,
            decision=parsed.decision,
            in_reply_to=parsed.in_reply_to,
            tags=parsed.tags,
        )
        copies = copy_specs(config, parsed.decision, rcpts)
        try:
            message_id = await self.store.spool(msg, copies)
        except Exception:
            log.exception("%s: spooling failed", ip)
            return None
        self.spool_guard.spooled(len(copies))
        if self.metrics is not None:
            self.metrics.messages_accepted.inc()
        log.debug(  # server.py logs the transaction's one line, with the reply
            "%s: queued %s from=<%s> rcpts=%d size=%d",
            ip,
            message_id,
            mail_from,
            len(rcpts),
            len(parsed.raw),
        )
        try:
            self.on_spooled()
        except Exception:  # the message is safe; delivery will find it on its next scan
            log.exception("on_spooled callback failed")
        if parsed.in_reply_to:
            self._follow_up(record_replies(self.store, parsed.in_reply_to, rcpts))
        return message_id

    def _follow_up(self, work: Coroutine[Any, Any, int]) -> None:
        """Run work beside the session: its commit is not the 250's to wait for."""
        task = asyncio.create_task(work)
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)

    async def close(self) -> None:
        """Wait for the follow-ups still running (they log their own failures)."""
        while self._followups:
            await asyncio.gather(*self._followups, return_exceptions=True)
