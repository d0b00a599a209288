"""smtp.workers and tracking.workers: 1 (the default) to 256, refused by name otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.core.config import Config, ConfigError, load_config


def load_text(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "relay.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize("section", ["smtp", "tracking"])
@pytest.mark.parametrize("value", ["0", "-1", "257", "true", '"2"', "2.0"])
def test_a_process_count_outside_1_to_256_is_refused_by_name(
    tmp_path: Path, section: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{section}\.workers: "):
        load_text(tmp_path, f"[{section}]\nworkers = {value}\n")


def test_workers_default_to_one_and_take_a_count(tmp_path: Path) -> None:
    default = load_text(tmp_path, "")
    assert (default.smtp.workers, default.tracking.workers) == (1, 1)
    config = load_text(tmp_path, "[smtp]\nworkers = 4\n[tracking]\nworkers = 256\n")
    assert (config.smtp.workers, config.tracking.workers) == (4, 256)
