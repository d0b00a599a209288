"""Fixtures for the SMTP front: a real store, a real server on loopback, real TLS."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from smtp.running import PASSWORD, Certs, Relay, StartRelay, smtp_config

from relay.core.config import Config
from relay.core.metrics import Metrics
from relay.core.passwords import hash_password
from relay.core.store import Store
from relay.smtp.auth import AuthThrottle, ThrottleSettings
from relay.smtp.server import start_smtp


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    folder = tmp_path_factory.mktemp("certs")
    cert, key = folder / "cert.pem", folder / "key.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certs(str(cert), str(key), client)


@pytest.fixture
async def start_relay(store: Store) -> AsyncIterator[StartRelay]:
    """start_relay(**smtp_overrides) -> Relay; a short AUTH reply delay for the tests."""
    started: list[Relay] = []

    async def start(throttle: ThrottleSettings | None = None, **overrides: Any) -> Relay:
        config = Config(smtp=smtp_config(**overrides))
        woken: list[float] = []
        metrics = Metrics()
        servers = await start_smtp(
            config,
            store,
            lambda: woken.append(time.time()),
            throttle=AuthThrottle(throttle or ThrottleSettings(reply_delay=0.05)),
            metrics=metrics,
        )
        relay = Relay(servers, store, config, woken, metrics)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await relay.servers.close(grace=1.0)
