"""SMTP AUTH: checking credentials and slowing down password guessing.

argon2 is slow on purpose, so verification runs in a worker thread and the
event loop keeps serving other sessions meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from relay.core.config import SmtpConfig
from relay.core.passwords import verify_password

MAX_CREDENTIAL_BYTES = 1024


@dataclass(frozen=True)
class ThrottleSettings:
    """How failed AUTH attempts from one IP are slowed down."""

    base_delay: float = 1.0  # seconds before the 535 after the first failure
    max_delay: float = 30.0
    forget_after: float = 900.0  # a quiet IP starts over after this many seconds
    max_ips: int = 10_000  # memory bound: the oldest entries are dropped first
    failures_per_connection: int = 3  # then the connection is closed with 421


class AuthThrottle:
    """Per-IP failure counts with an increasing delay; bounded memory."""

    def __init__(self, settings: ThrottleSettings | None = None) -> None:
        self.settings = settings or ThrottleSettings()
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def failures(self, ip: str) -> int:
        entry = self._failures.get(ip)
        if entry is None or time.monotonic() - entry[1] > self.settings.forget_after:
            return 0
        return entry[0]

    def record_failure(self, ip: str) -> float:
        """Count a failure and return how long to wait before answering it."""
        count = self.failures(ip) + 1
        self._failures.pop(ip, None)
        self._failures[ip] = (count, time.monotonic())
        while len(self._failures) > self.settings.max_ips:
            self._failures.popitem(last=False)
        return min(self.settings.base_delay * 2.0 ** min(count - 1, 30), self.settings.max_delay)

    def record_success(self, ip: str) -> None:
        self._failures.pop(ip, None)


async def check_credentials(config: SmtpConfig, login: bytes, password: bytes) -> str | None:
    """The user name when login and password match a configured user, else None."""
    if len(login) > MAX_CREDENTIAL_BYTES or len(password) > MAX_CREDENTIAL_BYTES:
        return None
    try:
        name = login.decode("utf-8")
        secret = password.decode("utf-8")
    except UnicodeDecodeError:
        return None
    user = next((u for u in config.users if u.name == name), None)
    if user is None:
        if config.users:  # same cost as a real check: no user-name oracle by timing
            await asyncio.to_thread(verify_password, config.users[0].password_hash, secret)
        return None
    if await asyncio.to_thread(verify_password, user.password_hash, secret):
        return user.name
    return None
