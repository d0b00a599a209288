"""The delivery role: hold the store's delivery lock, then run the worker until cancelled."""

from __future__ import annotations

import asyncio
import logging

from relay.core.config import Config
from relay.core.metrics import DeliveryMetrics
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.exclusive import DeliveryLock
from relay.delivery.sweeper import StoreSweeper
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker
from relay.dkim import DkimSigner

log = logging.getLogger("relay.delivery")

LOCK_POLL_SECONDS = 2.0


async def deliver(
    config: Config,
    store: Store,
    codec: TokenCodec,
    signer: DkimSigner | None,
    metrics: DeliveryMetrics | None,
    wake: asyncio.Event,
) -> None:
    """Deliver due copies (at once when wake is set) until cancelled; then drain.

    While another process holds the lock this one stands by, so a restarted or
    second relay on the same store never delivers a copy twice.
    """
    lock = DeliveryLock(config.store.path)
    if not lock.try_acquire():
        log.warning(
            "another process (pid %s) delivers from %s; standing by until it stops",
            lock.holder(),
            config.store.path,
        )
        while True:  # an flock has no event to wait on
            await asyncio.sleep(LOCK_POLL_SECONDS)
            if lock.try_acquire():
                break
        log.info("delivery lock taken: delivering from %s", config.store.path)
    try:
        upstream = open_upstream(config.upstream, helo_name=config.smtp.hostname)
        worker = DeliveryWorker(config, store, codec, upstream, signer, metrics)
        sweeper = StoreSweeper(store)
        await worker.start()
        sweeper.start()
        try:
            while True:
                await wake.wait()
                wake.clear()
                worker.wake()
        finally:
            await sweeper.stop()
            await worker.stop()
    finally:
        lock.release()
