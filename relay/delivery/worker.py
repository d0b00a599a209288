"""The delivery worker: due copies -> per-copy rewrite -> upstream -> outcome."""

from __future__ import annotations

from relay.core.config import Config
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.upstream import Upstream


class DeliveryWorker:
    def __init__(self, config: Config, store: Store, codec: TokenCodec, upstream: Upstream) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        """Called by the SMTP front after a spool, so delivery starts at once."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop taking copies; finish the ones in flight."""
        raise NotImplementedError
