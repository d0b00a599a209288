"""The AUTH failure budget over real sockets: shared by every session of the relay."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from smtp.running import PASSWORD, Relay, alice, smtp_config
from smtp.test_smtp_auth import auth_plain

import relay.smtp.auth
from relay.core.config import Config, SmtpUser
from relay.core.metrics import Metrics
from relay.core.store import Store
from relay.smtp.auth import AuthThrottle, ThrottleSettings, address_key
from relay.smtp.server import start_smtp

Start = Callable[..., Awaitable[tuple[Relay, Metrics]]]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The password hashes argon2 was asked to verify against, in order."""
    seen: list[str] = []
    verify = relay.smtp.auth.verify_password

    def counting(password_hash: str, password: str) -> bool:
        seen.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(relay.smtp.auth, "verify_password", counting)
    return seen


@pytest.fixture
async def start(store: Store) -> AsyncIterator[Start]:
    """start(settings, users) -> (Relay, its Metrics)."""
    started: list[Relay] = []

    async def run(settings: ThrottleSettings, users: tuple[SmtpUser, ...]) -> tuple[Relay, Metrics]:
        config = Config(smtp=smtp_config(require_tls_for_auth=False, users=users))
        metrics = Metrics()
        servers = await start_smtp(
            config, store, lambda: None, throttle=AuthThrottle(settings), metrics=metrics
        )
        running = Relay(servers, store, config)
        started.append(running)
        return running, metrics

    yield run
    for running in started:
        await running.servers.close(grace=1.0)


def failures(metrics: Metrics) -> dict[str, float]:
    return {
        reason: metrics.registry.get_sample_value("relay_auth_failures_total", {"reason": reason})
        or 0.0
        for reason in ("bad_credentials", "address_limit", "user_limit")
    }


async def test_parallel_sessions_from_one_address_share_its_budget(
    start: Start, password_hash: str, checks: list[str]
) -> None:
    """Twelve sessions guess at once: only the budget's worth of passwords is checked."""
    settings = ThrottleSettings(reply_delay=0.2, failures_per_address=3, failures_per_user=100)
    running, metrics = await start(settings, (alice(password_hash),))
    answers = await asyncio.gather(*(auth_plain(running.port, f"guess {i}") for i in range(12)))
    replies = sorted(reply for reply, _ in answers)
    assert replies == ["454 4.7.0"] * 9 + ["535 5.7.8"] * 3
    assert len(checks) == 3  # argon2 ran only for the three within the budget
    assert all(seconds >= 0.2 for _, seconds in answers)
    # The right password from the same address is refused too, without a check.
    assert (await auth_plain(running.port, PASSWORD))[0] == "454 4.7.0"
    assert len(checks) == 3
    assert failures(metrics) == {
        "bad_credentials": 3.0,
        "address_limit": 10.0,
        "user_limit": 0.0,
    }


async def test_the_budget_comes_back_when_the_window_ends(start: Start, password_hash: str) -> None:
    settings = ThrottleSettings(reply_delay=0.01, failures_per_address=2, window=1.0)
    running, _metrics = await start(settings, (alice(password_hash),))
    for _ in range(2):
        assert (await auth_plain(running.port, "wrong"))[0] == "535 5.7.8"
    assert (await auth_plain(running.port, PASSWORD))[0] == "454 4.7.0"
    await asyncio.sleep(1.1)
    assert (await auth_plain(running.port, PASSWORD))[0] == "235 2.7.0"


async def test_a_user_budget_holds_across_connections_and_spares_other_users(
    start: Start, password_hash: str, checks: list[str]
) -> None:
    """The per-user budget counts failures for one name over every session; an address
    budget too large to matter shows it is the user's that stops the guessing."""
    settings = ThrottleSettings(reply_delay=0.01, failures_per_address=100, failures_per_user=3)
    bob = SmtpUser(name="bob", password_hash=password_hash)
    running, metrics = await start(settings, (alice(password_hash), bob))
    for i in range(3):
        assert (await auth_plain(running.port, f"guess {i}"))[0] == "535 5.7.8"
    assert (await auth_plain(running.port, PASSWORD))[0] == "454 4.7.0"
    assert (await auth_plain(running.port, "x", user="ALICE"))[0] == "454 4.7.0"  # same name
    assert (await auth_plain(running.port, PASSWORD, user="bob"))[0] == "235 2.7.0"
    assert len(checks) == 4  # three guesses and bob's login
    assert failures(metrics) == {
        "bad_credentials": 3.0,
        "address_limit": 0.0,
        "user_limit": 2.0,
    }


async def test_unknown_user_names_have_budgets_too(start: Start, password_hash: str) -> None:
    settings = ThrottleSettings(reply_delay=0.01, failures_per_address=100, failures_per_user=1)
    running, _metrics = await start(settings, (alice(password_hash),))
    assert (await auth_plain(running.port, "x", user="mallory"))[0] == "535 5.7.8"
    assert (await auth_plain(running.port, "x", user="mallory"))[0] == "454 4.7.0"


async def test_argon2_checks_run_a_bounded_number_at_a_time(
    monkeypatch: pytest.MonkeyPatch, start: Start, password_hash: str
) -> None:
    running_now: list[int] = [0, 0]  # now, most at once
    lock = threading.Lock()

    def slow(password_hash: str, password: str) -> bool:
        with lock:
            running_now[0] += 1
            running_now[1] = max(running_now[1], running_now[0])
        time.sleep(0.05)
        with lock:
            running_now[0] -= 1
        return False

    monkeypatch.setattr(relay.smtp.auth, "verify_password", slow)
    settings = ThrottleSettings(reply_delay=0.0, failures_per_address=100, max_checks=2)
    running, _metrics = await start(settings, (alice(password_hash),))
    answers = await asyncio.gather(*(auth_plain(running.port, "x") for _ in range(8)))
    assert {reply for reply, _ in answers} == {"535 5.7.8"}
    assert running_now[1] == 2


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),  # same /64: same budget
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # IPv4-mapped: the IPv4 address's budget
        ("fe80::1%eth0", "fe80::/64"),
        ("", ""),
    ],
)
def test_address_keys(ip: str, key: str) -> None:
    assert address_key(ip) == key


def test_defaults_come_from_the_config() -> None:
    config = smtp_config(
        auth_failures_per_address=7, auth_failures_per_user=9, auth_failure_window=60.0
    )
    settings = ThrottleSettings.from_config(config)
    assert (settings.failures_per_address, settings.failures_per_user) == (7, 9)
    assert (settings.window, settings.reply_delay) == (60.0, 1.0)
    default = ThrottleSettings()
    assert (default.failures_per_address, default.window, default.reply_delay) == (5, 300.0, 1.0)
