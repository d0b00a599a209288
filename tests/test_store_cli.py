"""`relay migrate` and `relay store-copy` as an operator runs them, against a real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.test_store_copy import filled_sqlite


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=120
    )


async def test_migrate_then_store_copy_from_the_command_line(
    tmp_path: Path, postgres_url: str
) -> None:
    source = tmp_path / "relay.db"
    await filled_sqlite(source)
    first = relay("migrate", "--store", postgres_url)
    assert first.returncode == 0, first.stderr
    assert "went from version 0 to" in first.stdout
    again = relay("migrate", "--store", postgres_url)
    assert "nothing to do" in again.stdout

    copied = relay("store-copy", str(source), postgres_url)
    assert copied.returncode == 0, copied.stderr
    assert "rows" in copied.stderr  # the progress bar
    lines = {line.split()[0]: line.split()[1:] for line in copied.stdout.splitlines()[1:-1]}
    assert lines["copies"] == ["3", "3"] and lines["events"] == ["2", "2"]
    assert "same number of rows" in copied.stdout

    refused = relay("store-copy", str(source), postgres_url)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "relay store-copy: the PostgreSQL store is not empty (messages has rows):"
        " copy into a new database"
    ]
    wrong = relay("store-copy", str(source), str(tmp_path / "other.db"))
    assert wrong.returncode == 1 and "postgresql://" in wrong.stderr


def test_backup_and_a_broken_url_say_what_to_do_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f'[store]\nurl = "{postgres_url}"\n', encoding="utf-8")
    backup = relay("backup", str(tmp_path / "copy.db"), "--config", str(config))
    assert backup.returncode == 2 and "use pg_dump" in backup.stderr
    unmigrated = relay("queue", "list", "--config", str(config))
    assert unmigrated.returncode != 0 and "relay migrate" in unmigrated.stderr
