"""Caps on what a client controls: open connections, in all and per address; the part of
a User-Agent that is kept; logs that a flood cannot turn into a flood of its own.

Both fronts use these (the SMTP listeners and the two HTTP listeners): every
connection holds a file descriptor and some memory, and without a cap a few
thousand idle or half-sent connections exhaust the process for everyone.
Postfix's anvil counts connections per client address the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOG_INTERVAL = 10.0  # seconds between two lines about the same kind of failure
# Characters of a tracking hit's User-Agent that are classified, named and stored: agents
# are cached by value and crawlerdetect costs ~1 ms per long one.
MAX_USER_AGENT = 512


@dataclass
class ConnectionLimits:
    """Counts open connections; ``admit`` says why one is refused, or None.

    Addresses in ``exempt`` (trusted reverse proxies: every reader arrives
    through them) count toward the listener's total only.
    """

    max_total: int
    max_per_address: int
    exempt: tuple[Network, ...] = ()
    total: int = 0
    by_address: dict[str, int] = field(default_factory=dict)
    refused: int = 0

    def admit(self, address: str) -> str | None:
        if self.total >= self.max_total:
            self.refused += 1
            return "too many connections"
        count = self.by_address.get(address, 0)
        if count >= self.max_per_address and not self._exempt(address):
            self.refused += 1
            return "too many connections from your address"
        self.total += 1
        self.by_address[address] = count + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        count = self.by_address.get(address, 0) - 1
        if count > 0:
            self.by_address[address] = count
        else:
            self.by_address.pop(address, None)

    def _exempt(self, address: str) -> bool:
        if not self.exempt:
            return False
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(
            parsed in network for network in self.exempt if network.version == parsed.version
        )


def peer_address(transport: asyncio.BaseTransport) -> str:
    """The client's address as text ("" for a socket with no address, such as a test pipe)."""
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return ""


class RateLimitedLog:
    """At most one line per kind of failure per interval, with how many there were.

    A flood produces the same failure thousands of times a second; a
    traceback for each fills the disk (the log grew ~5 MB/s under a
    connection flood). The first of a kind is logged at once, later ones are
    counted and summarised when the interval has passed.
    """

    def __init__(self, logger: logging.Logger, interval: float = LOG_INTERVAL) -> None:
        self._log = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str) -> None:
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        more = self._suppressed.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({more} more like it in the last {now - last:.0f} s)" if more and last else ""
        self._log.warning("%s%s", message, suffix)


def quiet_loop_errors(loop: asyncio.AbstractEventLoop, log: RateLimitedLog) -> None:
    """asyncio logs a traceback for every failed accept() ("Too many open files") and every
    broken connection: one line per kind and interval instead."""

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        error = context.get("exception")
        kind = f"{message}:{type(error).__name__}"
        log.warning(kind, f"{message}: {error!r}" if error is not None else message)

    loop.set_exception_handler(handler)


def raise_file_limit() -> tuple[int, int]:
    """The soft limit on open files raised to the hard one (connections are files); returns
    (soft, hard) after the change."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft, hard
