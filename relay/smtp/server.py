"""aiosmtpd wiring: plain/STARTTLS and implicit-TLS listeners."""

from __future__ import annotations

from collections.abc import Callable

from relay.core.config import Config
from relay.core.store import Store


class SmtpServers:
    async def close(self) -> None:
        """Stop accepting; let sessions in DATA finish."""
        raise NotImplementedError


async def start_smtp(config: Config, store: Store, on_spooled: Callable[[], None]) -> SmtpServers:
    """Bind every listener; OSError (port in use) and ssl errors propagate to the CLI."""
    raise NotImplementedError
