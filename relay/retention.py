"""Privacy: the retention purge on a schedule, and erasing one recipient (SPEC section 3).

Both only ask the store (Store.purge_older_than, Store.erase_recipient); this
module decides when, and says what was done.
"""

from __future__ import annotations

import asyncio
import logging
import time

from relay.core.config import Config
from relay.core.store import Store, holder_name, open_store
from relay.core.tasks import cancel_and_wait

log = logging.getLogger("relay.retention")

MAX_INTERVAL = 3600.0  # purge at least hourly: nothing outlives retention by much
MIN_INTERVAL = 1.0
PURGE_LEASE = "purge"  # one purge at a time, whichever process or host runs it


def purge_interval(retention: float) -> float:
    """A tenth of the retention, between a second and an hour."""
    return max(MIN_INTERVAL, min(retention / 10, MAX_INTERVAL))


class RetentionPurger:
    """Deletes events and messages older than the retention, at start and then periodically."""

    def __init__(self, store: Store, retention: float, interval: float | None = None) -> None:
        self._store = store
        self._retention = retention
        self._interval = purge_interval(retention) if interval is None else interval
        self._task: asyncio.Task[None] | None = None
        self._owner = holder_name("purge")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-purge")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def purge_once(self, now: float | None = None) -> dict[str, int]:
        cutoff = (time.time() if now is None else now) - self._retention
        counts = await self._store.purge_older_than(cutoff)
        if any(counts.values()):
            log.info("retention: deleted %s", describe(counts))
        return counts

    async def _run(self) -> None:
        """Every process with a retention runs this; the holder of the purge lease purges
        (held a little longer than one interval: the holder keeps it while it lives)."""
        while True:
            try:
                if await self._store.take_lease(PURGE_LEASE, self._owner, self._interval * 2):
                    await self.purge_once()
            except Exception:  # a store hiccup: try again next time, never stop
                log.exception("retention purge failed")
            await asyncio.sleep(self._interval)


def describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in counts.items())


async def erase_address(config: Config, address: str) -> dict[str, int]:
    """`relay erase ADDRESS`: open the configured store, erase, close."""
    store = open_store(config.store)
    await store.open()
    try:
        return await store.erase_recipient(address)
    finally:
        await store.close()
