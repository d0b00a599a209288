"""Fixtures: real upstreams on loopback (see delivery.upstreams)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from delivery.upstreams import ScriptedHandler, SinkFactory, Tls, misbehave
from support.processes import free_port


@pytest.fixture
def make_sink() -> Iterator[SinkFactory]:
    """Start aiosmtpd sinks on free loopback ports; Controller kwargs pass through."""
    controllers: list[Controller] = []

    def start(**kwargs: Any) -> tuple[ScriptedHandler, int]:
        handler = ScriptedHandler()
        port = free_port()
        host = kwargs.pop("hostname", "127.0.0.1")
        controller = Controller(handler, hostname=host, port=port, decode_data=False, **kwargs)
        controller.start()
        controllers.append(controller)
        return handler, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def tls(tmp_path: Path) -> Tls:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Tls(context, ca_file)


@pytest.fixture
async def misbehaving() -> AsyncIterator[Callable[[str], Any]]:
    """start(mode) -> port of a server that misbehaves (modes: see upstreams.misbehave)."""
    servers: list[asyncio.Server] = []

    async def start(mode: str) -> int:
        server = await asyncio.start_server(
            lambda r, w: misbehave(mode, r, w), host="127.0.0.1", port=0
        )
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
