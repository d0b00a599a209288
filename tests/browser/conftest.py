"""Headless Chromium (Debian's, never a downloaded build) and a relay to look at.

`make test` installs the `chromium` package when it is missing and the
Python `playwright` package as a test extra; `playwright install` is never
run: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright
from support.processes import REPO, RelayProcess, start_relay, stop_relay

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = REPO / "test-output"
TOKEN = "t0ken"

RELAY_TOML = """
[smtp]
listen = "127.0.0.1:{smtp}"
hostname = "relay.test"

[tracking]
listen = "127.0.0.1:{tracking}"
base_url = "http://127.0.0.1:{tracking}"
# The test's reader opens the mail a moment after delivery, which in life is a sandbox.
bot_open_window = "0"
# Nor is its click (or the page tests' reader's) a scanner's for following soon after delivery.
bot_click_window = "0"
# Its one-line mail would get no pixel otherwise (it would read as image-only to filters).
avoid_image_only = false

[admin]
listen = "127.0.0.1:{admin}"
token = "t0ken"

[store]
path = "relay.db"

[upstream]
url = "maildir:./outbox"
"""


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayProcess]:
    """`python -m relay serve` delivering into tmp_path/outbox as .eml files."""
    running = start_relay(tmp_path, RELAY_TOML)
    yield running
    code, err = stop_relay(running)
    assert code == 0, err


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()


@pytest.fixture
def output_dir() -> Path:
    """Screenshots go to test-output/ at the repository root (git-ignored)."""
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT
