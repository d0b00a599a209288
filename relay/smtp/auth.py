"""SMTP AUTH: checking credentials, and a failure budget against password guessing.

One AuthThrottle serves every connection of the process, so parallel sessions
share it. Each client address (an IPv4 address, an IPv6 /64) and each user
name may fail a few times per window (anvil-style fixed windows); past that,
AUTH is answered ``454 4.7.0`` without checking the password until the window
ends. A check reserves its place in both budgets before it starts, so a burst
of parallel sessions cannot run more checks than the budget allows. Every AUTH
answer, success, failure or refusal, waits the same fixed delay from the start
of the attempt, so the reply time tells nothing about the password.

argon2 is slow on purpose, so verification runs in worker threads, a bounded
number at a time, and the event loop keeps serving other sessions meanwhile.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from relay.core.config import SmtpConfig
from relay.core.passwords import verify_password

log = logging.getLogger("relay.smtp")

MAX_CREDENTIAL_BYTES = 1024
MAX_CHECKS = min(4, os.cpu_count() or 1)  # argon2 checks at once, process-wide

Outcome = Literal["ok", "bad_credentials", "address_limit", "user_limit"]


@dataclass(frozen=True)
class ThrottleSettings:
    """How AUTH attempts are paced and budgeted (smtp.auth_* in the config)."""

    reply_delay: float = 1.0  # seconds from the AUTH to its answer, whatever the answer
    failures_per_address: int = 5  # per window, from one IPv4 address or IPv6 /64
    failures_per_user: int = 10  # per window, for one user name, from any address
    window: float = 300.0  # seconds
    failures_per_connection: int = 3  # then the connection is closed with 421
    max_checks: int = MAX_CHECKS
    max_keys: int = 10_000  # memory bound per budget: the oldest entries are dropped first

    @classmethod
    def from_config(cls, config: SmtpConfig) -> ThrottleSettings:
        return cls(
            reply_delay=config.auth_reply_delay,
            failures_per_address=config.auth_failures_per_address,
            failures_per_user=config.auth_failures_per_user,
            window=config.auth_failure_window,
        )


@dataclass(frozen=True)
class Attempt:
    """What an AUTH attempt came to: the user name when outcome is "ok"."""

    outcome: Outcome
    user: str | None = None


class FailureBudget:
    """Failures per key in fixed windows; checks in flight count until they end."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # start, failures
        self._pending: dict[str, int] = {}

    def failures(self, key: str, now: float) -> int:
        entry = self._windows.get(key)
        if entry is None or now - entry[0] >= self.window:
            return 0
        return entry[1]

    def exhausted(self, key: str, now: float) -> bool:
        return self.failures(key, now) + self._pending.get(key, 0) >= self.limit

    def reserve(self, key: str) -> None:
        self._pending[key] = self._pending.get(key, 0) + 1

    def release(self, key: str, failed: bool, now: float) -> bool:
        """End a reserved check; True when this failure used up the budget."""
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)
        if not failed:
            return False
        entry = self._windows.pop(key, None)
        if entry is None or now - entry[0] >= self.window:
            entry = (now, 0)
        entry = (entry[0], entry[1] + 1)
        self._windows[key] = entry
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        return entry[1] == self.limit


def address_key(ip: str) -> str:
    """The budget's key for a client: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def user_key(login: bytes) -> str:
    """The budget's key for a user name as sent, known or not (no enumeration oracle)."""
    return login[:MAX_CREDENTIAL_BYTES].decode("utf-8", "replace").casefold()


class AuthThrottle:
    """The process-wide AUTH budgets, the bound on checks at once, and the reply delay."""

    def __init__(self, settings: ThrottleSettings | None = None) -> None:
        self.settings = s = settings or ThrottleSettings()
        self.by_address = FailureBudget(s.failures_per_address, s.window, s.max_keys)
        self.by_user = FailureBudget(s.failures_per_user, s.window, s.max_keys)
        self._checks = asyncio.Semaphore(max(1, s.max_checks))
        self._running: set[asyncio.Task[str | None]] = set()

    async def attempt(self, config: SmtpConfig, ip: str, login: bytes, password: bytes) -> Attempt:
        """Check login and password within both budgets; returns reply_delay after the call."""
        started = time.monotonic()
        result = await self._attempt(config, ip, login, password)
        left = started + self.settings.reply_delay - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)
        return result

    async def _attempt(self, config: SmtpConfig, ip: str, login: bytes, password: bytes) -> Attempt:
        address, user = address_key(ip), user_key(login)
        now = time.monotonic()
        if self.by_address.exhausted(address, now):
            return Attempt("address_limit")
        if self.by_user.exhausted(user, now):
            return Attempt("user_limit")
        self.by_address.reserve(address)
        self.by_user.reserve(user)
        name: str | None = None
        try:
            # Shielded: a client that hangs up mid-check frees no slot before argon2 ends.
            task = asyncio.ensure_future(self._check(config, login, password))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            name = await asyncio.shield(task)
        finally:  # a check cut short by a hang-up counts as a failure
            failed = name is None
            now = time.monotonic()
            if self.by_address.release(address, failed, now):
                log.warning("%s: AUTH failure budget used up; 454 until the window ends", address)
            if self.by_user.release(user, failed, now):
                log.warning("AUTH failure budget of user %r used up; 454 until it ends", user[:64])
        return Attempt("bad_credentials") if name is None else Attempt("ok", name)

    async def _check(self, config: SmtpConfig, login: bytes, password: bytes) -> str | None:
        async with self._checks:
            return await check_credentials(config, login, password)


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
