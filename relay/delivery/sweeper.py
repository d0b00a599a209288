"""The store's housekeeping, done by one of the processes that deliver at a time.

Bodies are released when a message's last copy or bounce becomes final, in that
same transaction; this sweep finds any that were not (a store written by an
older version, a path that did not ask) and gives free space beyond a reserve
back to the filesystem. Every delivery worker runs a sweeper; the one holding the
store's "sweep" lease sweeps, so two processes never vacuum one file at once.
"""

from __future__ import annotations

import asyncio
import logging

from relay.core.store import Store
from relay.core.tasks import cancel_and_wait

log = logging.getLogger("relay.delivery")

SWEEP_SECONDS = 30.0
SWEEP_LEASE = "sweep"
# Free pages kept for the next messages' bodies (reused without growing the file): a few
# seconds of a busy relay's spool; beyond it, space goes back to the filesystem.
KEEP_BYTES = 16 * 1024 * 1024


class StoreSweeper:
    def __init__(
        self,
        store: Store,
        interval: float = SWEEP_SECONDS,
        keep_bytes: int = KEEP_BYTES,
        owner: str = "sweeper",
    ) -> None:
        self._store = store
        self._owner = owner
        self._interval = interval
        self._keep = keep_bytes
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="store-sweeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def sweep_once(self) -> tuple[int, int]:
        """(bodies released, bytes given back to the filesystem)."""
        released = await self._store.release_bodies()
        reclaimed = await self._store.reclaim_space(self._keep)
        if released or reclaimed:
            log.info("store: %d bodies released, %.1f MB given back", released, reclaimed / 1e6)
        return released, reclaimed

    async def _run(self) -> None:
        while True:
            try:
                # Held a little longer than one interval: the holder keeps it while it lives.
                if await self._store.take_lease(SWEEP_LEASE, self._owner, self._interval * 2):
                    await self.sweep_once()
            except Exception:  # the store may be briefly down: next time
                log.exception("store sweep failed")
            await asyncio.sleep(self._interval)
