"""The cited labelled set (benchmarks/data) replayed through the real tracking server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from support.processes import REPO, relay_env

DATA = REPO / "benchmarks" / "data"


def test_the_set_is_large_cited_and_has_sequences() -> None:
    rows = [json.loads(line) for line in (DATA / "labelled_requests.jsonl").open()]
    assert len(rows) >= 300
    sources = (DATA / "SOURCES.md").read_text(encoding="utf-8")
    assert all(f"| {row['source']} |" in sources for row in rows)
    sequences = {row["seq"] for row in rows if row["seq"]}
    assert len(sequences) >= 40
    assert {row["expected"] for row in rows} == {"human", "bot", "proxy", "prefetch"}


def test_replay_meets_the_targets() -> None:
    """>= 97% of events in the right class, every human event of a sequence kept human."""
    script = REPO / "benchmarks" / "labelled.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"],
        capture_output=True,
        text=True,
        env=relay_env(),
        cwd=Path(script).parent,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "human events of sequences kept human" in done.stdout
