"""Back-pressure: slow senders down while the queue grows, refuse with 452 when it is full.

With the upstream down or slower than the senders, the spool only grows; a relay
that keeps answering 250 fills its disk and then fails everything. So, first, flow
control (Postfix's in_flow_delay): while copies arrive faster than they leave the
queue, the reply to DATA is held back, longer the further arrivals outrun
deliveries, up to smtp.flow_delay; each sending session then sends fewer messages
a second. Last, at max_queued_copies, new mail gets 452 at MAIL and DATA, so
clients and MTAs keep it and retry later.

The queue is counted in the store at most once per REFRESH_SECONDS (a count per
MAIL would cost more than the mail), and this process's own spools are added in
between. Deliveries are not seen directly (they may happen in another process):
what the queue did not grow by, of what this process added, has left it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from relay.core.config import SmtpConfig
from relay.core.metrics import Metrics
from relay.core.store import Store

log = logging.getLogger("relay.smtp")

REFRESH_SECONDS = 1.0
WINDOW_SECONDS = 3.0  # rates are measured over the recounts of this long
FLOOR_MAX = 1000  # below min(this, max_queued_copies / 10) waiting copies, no delay
GAIN = 0.5  # the delay changes by up to this fraction of itself per recount
STEP = 0.005  # seconds: the delay's change from nothing, and its smallest step
PULL = 0.1  # how strongly a queue above the floor counts as arrivals outrunning delivery


class SpoolGuard:
    """Knows (roughly, at most a second old) how many copies wait in the queue, and
    how long to hold the reply to DATA so arrivals keep pace with deliveries."""

    def __init__(self, config: SmtpConfig, store: Store, metrics: Metrics | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.delay = 0.0  # seconds the next reply to DATA waits
        self.configure(config)
        self._queued = 0
        self._counted_at: float | None = None
        self._arrived = 0  # copies this process spooled, ever
        self._samples: deque[tuple[float, int, int]] = deque()  # (time, queued, arrived)

    def configure(self, config: SmtpConfig) -> None:
        """The limits of a (new) config; SIGHUP applies them to the next message (the
        counts and the delay already measured carry over, the delay held to the new cap)."""
        self.limit = config.max_queued_copies
        self.max_delay = config.flow_delay
        self.floor = min(FLOOR_MAX, self.limit // 10)
        self.delay = min(self.delay, self.max_delay)

    async def queue_full(self) -> bool:
        """True while at least max_queued_copies copies are queued or deferred."""
        now = time.monotonic()
        if self._counted_at is None or now - self._counted_at >= REFRESH_SECONDS:
            self._counted_at = now
            try:
                self._queued = await self.store.count_queued()
            except Exception:  # the store is down: the spool will say so with a 451
                log.warning("could not count the queue; keeping the last count")
            else:
                self._adjust(now, self._queued)
        if self._queued >= self.limit:
            log.warning("queue holds %d copies (limit %d): refusing mail", self._queued, self.limit)
            return True
        return False

    def spooled(self, copies: int) -> None:
        """Count a message just spooled until the next recount."""
        self._queued += copies
        self._arrived += copies

    async def pace(self) -> None:
        """Hold the reply to DATA for the current delay (the message is not stored yet,
        so a crash meanwhile loses nothing that was acknowledged)."""
        if self.delay > 0:
            await asyncio.sleep(self.delay)

    def _adjust(self, now: float, queued: int) -> None:
        """The delay from the last WINDOW_SECONDS: the share of arrivals the queue kept
        (negative when it shrank) moves it by up to GAIN of itself per recount, so it
        settles where arrivals match deliveries, whatever the number of senders."""
        self._samples.append((now, queued, self._arrived))
        while now - self._samples[0][0] > WINDOW_SECONDS and len(self._samples) > 2:
            self._samples.popleft()
        then, queued_then, arrived_then = self._samples[0]
        arrived = self._arrived - arrived_then
        if self.max_delay <= 0 or queued <= self.floor or now <= then:
            self.delay = self.delay / 2 if self.delay > STEP else 0.0
        elif arrived > 0:
            grew = (queued - queued_then) / arrived  # 1: nothing left; < 0: the queue shrank
            excess = max(-1.0, min(1.0, grew + PULL * (queued - self.floor) / queued))
            self.delay = self.delay * (1 + GAIN * excess) + STEP * excess
            self.delay = max(0.0, min(self.max_delay, self.delay))
        if self.metrics is not None:
            self.metrics.flow_delay.set(self.delay)
