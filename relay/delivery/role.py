"""The delivery role: a worker (it shares the queue by leases) and the store's sweeper."""

from __future__ import annotations

import asyncio
import logging

from relay.core.config import Config
from relay.core.metrics import DeliveryMetrics
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.sweeper import StoreSweeper
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker
from relay.dkim import DkimSigner

log = logging.getLogger("relay.delivery")


async def deliver(
    config: Config,
    store: Store,
    codec: TokenCodec,
    signer: DkimSigner | None,
    metrics: DeliveryMetrics | None,
    wake: asyncio.Event,
) -> None:
    """Deliver due copies (at once when wake is set) until cancelled; then drain.

    Any number of these, in any number of processes and hosts, share one store:
    each copy is taken with a lease (store/sql/leases.py), never by two at once.
    """
    upstream = open_upstream(config.upstream, helo_name=config.smtp.hostname)
    worker = DeliveryWorker(config, store, codec, upstream, signer, metrics)
    sweeper = StoreSweeper(store, owner=worker.owner)
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
