"""The `relay` command as a user meets it: --version, help for every option, empty queue."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import relay_command, relay_env

import relay
from relay.cli import _parser


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        relay_command(*args), cwd=cwd, env=relay_env(), capture_output=True, text=True, timeout=60
    )


def test_queue_retry_with_nothing_queued_says_so(tmp_path: Path) -> None:
    (tmp_path / "relay.toml").write_text('[store]\npath = "relay.db"\n', encoding="utf-8")
    result = run("queue", "retry", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "nothing to retry: no copy is queued or deferred\n"
    assert result.stderr == ""  # no empty progress bar


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"relay {relay.__version__}\n"
    assert relay.__version__ == importlib.metadata.version("mail-tracking-relay")


def every_parser(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_every_option_of_every_command_has_help() -> None:
    seen = 0
    for parser in every_parser(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help, f"{parser.prog} {action.option_strings or action.dest}: no help"
            seen += 1
        assert parser.description or parser.prog == "relay", f"{parser.prog}: no description"
    assert seen > 30


def test_help_of_every_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    for parser in every_parser(_parser()):
        args = parser.prog.split()[1:]
        with pytest.raises(SystemExit) as done:
            _parser().parse_args([*args, "--help"])
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {parser.prog}")
        if args and args not in (["queue"], ["hash-password"], ["store-copy"]):  # no config
            assert "--config FILE" in out, args
