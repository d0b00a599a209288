"""The upstream MTA: maildir:PATH, smtp://, smtp+starttls://, smtps://.

The only module that catches aiosmtplib's exceptions; everything is turned
into a DeliveryOutcome (delivered / temporary / permanent).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from relay.core.config import UpstreamConfig
from relay.core.models import DeliveryOutcome


class Upstream(Protocol):
    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryOutcome:
        """Deliver data; never raises for a delivery failure."""

    async def close(self) -> None: ...


def open_upstream(config: UpstreamConfig) -> Upstream:
    """Raises ConfigError for a URL it cannot use."""
    raise NotImplementedError
