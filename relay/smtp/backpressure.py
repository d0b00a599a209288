"""Back-pressure: refuse new mail with 452 while the queue holds too much.

With the upstream down the spool only grows; a relay that keeps answering 250
fills its disk and then fails everything. Refusing with a 4xx makes clients
(and MTAs handing over mail) keep the mail and retry later. The queue is
counted in the store at most once per REFRESH_SECONDS (a count per MAIL would
cost more than the mail), and this process's own spools are added in between.
"""

from __future__ import annotations

import logging
import time

from relay.core.config import SmtpConfig
from relay.core.metrics import Metrics
from relay.core.store import Store

log = logging.getLogger("relay.smtp")

REFRESH_SECONDS = 1.0
QUEUE_FULL = "452 4.3.1 Insufficient system storage"


class SpoolGuard:
    """Knows (roughly, at most a second old) how many copies wait in the queue."""

    def __init__(self, config: SmtpConfig, store: Store) -> None:
        self.limit = config.max_queued_copies
        self.store = store
        self._queued = 0
        self._counted_at: float | None = None

    async def queue_full(self) -> bool:
        """True while at least max_queued_copies copies are queued or deferred."""
        now = time.monotonic()
        if self._counted_at is None or now - self._counted_at >= REFRESH_SECONDS:
            try:
                self._queued = await self.store.count_queued()
            except Exception:  # the store is down: the spool will say so with a 451
                log.warning("could not count the queue; keeping the last count")
            self._counted_at = now
        if self._queued >= self.limit:
            log.warning("queue holds %d copies (limit %d): refusing mail", self._queued, self.limit)
            return True
        return False

    def spooled(self, copies: int) -> None:
        """Count a message just spooled until the next recount."""
        self._queued += copies


def refuse(metrics: Metrics | None, reason: str, reply: str) -> str:
    """The reply, counted under reason in relay_messages_refused."""
    if metrics is not None:
        metrics.refused(reason)
    return reply
