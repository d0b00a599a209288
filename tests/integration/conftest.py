"""Fixtures for end-to-end tests: a real upstream sink."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.processes import SinkHandler, running_sink


@pytest.fixture
def sink() -> Iterator[tuple[SinkHandler, int]]:
    with running_sink() as running:
        yield running
