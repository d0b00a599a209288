"""tracking.max_links_per_part from the config file to the delivered copy and its note."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.core.config import Config, ConfigError, load_config
from relay.core.models import Copy, Message, TrackingDecision
from relay.core.tokens import TokenCodec
from relay.delivery.copies import build_copy, build_plan

CODEC = TokenCodec(["test-key"])
LINKS = "".join(f'<a href="https://shop.example.com/{i}">item {i}</a>\r\n' for i in range(300))
MANY_LINKS = (
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: catalogue\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    + f"<html><body>\r\n{LINKS}</body></html>\r\n".encode()
)
MESSAGE = Message(
    "m1", "a@example.com", ("b@example.net",), 0.0, "127.0.0.1", None,
    "a@example.com", "catalogue", "<m1@example.com>", TrackingDecision(opens=True, clicks=True),
)  # fmt: skip
COPY = Copy(7, "m1", "b@example.net", ("b@example.net",), "queued")


def config_file(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "relay.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_the_default_cap_is_1000() -> None:
    assert Config().tracking.max_links_per_part == 1000
    assert build_plan(Config(), CODEC, COPY, MESSAGE).max_links_per_part == 1000


async def test_links_past_the_configured_cap_are_relayed_untouched_with_a_note(
    tmp_path: Path,
) -> None:
    config = config_file(tmp_path, "[tracking]\nmax_links_per_part = 120\n")
    built = await build_copy(config, CODEC, COPY, MESSAGE, MANY_LINKS)
    assert len(built.links) == 120  # the rows stored for this copy
    assert built.raw.count(b"/c/") == 120
    assert b'<a href="https://shop.example.com/119">' not in built.raw
    assert b'<a href="https://shop.example.com/120">item 120</a>' in built.raw
    assert b'<a href="https://shop.example.com/299">item 299</a>' in built.raw
    assert "; ".join(built.notes).endswith(
        "180 links after the first 120 left untracked (max_links_per_part)"
    )


@pytest.mark.parametrize("value", ["0", "-1", '"many"'])
def test_the_cap_must_be_a_positive_integer(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="max_links_per_part"):
        config_file(tmp_path, f"[tracking]\nmax_links_per_part = {value}\n")
