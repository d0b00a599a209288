"""The `relay` command as a user meets it: --version, help for every option, empty queue."""

from __future__ import annotations

import importlib.metadata
import itertools
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import relay_command, relay_env

import relay
from relay.cli import main


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


ENTRY = re.compile(r"^( {2}| {4})(\S.*)$")  # an option, an argument or a command
SECTION = re.compile(r"^\S.*:$")  # "options:", "positional arguments:"


def help_text(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What `relay ARGS --help` prints, through the command's own entry point."""
    with pytest.raises(SystemExit) as done:
        main([*args, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def entries(text: str) -> list[tuple[int, str, bool]]:
    """(indent, name, has help) of each argument, option and command the help lists."""
    found = []
    for line, following in itertools.pairwise([*text.splitlines(), ""]):
        match = ENTRY.match(line)
        if match is None:
            continue
        indent, body = match.groups()
        continued = following.startswith(" " * 6) and not following.isspace()
        found.append(
            (len(indent), body.split()[0], bool(re.search(r"\S {2,}\S", body)) or continued)
        )
    return found


def every_command(capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[list[str], str]]:
    """Each command and subcommand with its help text, `relay` itself first."""
    waiting: list[list[str]] = [[]]
    while waiting:
        args = waiting.pop(0)
        text = help_text(capsys, *args)
        yield args, text
        waiting += [[*args, name] for indent, name, _ in entries(text) if indent == 4]


def test_every_option_of_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    seen = 0
    for args, text in every_command(capsys):
        listed = entries(text)
        for (indent, name, has_help), after in itertools.pairwise([*listed, (0, "", False)]):
            if indent == 2 and after[0] == 4:
                continue  # the COMMAND or ACTION argument: its commands follow, with theirs
            assert has_help, f"relay {' '.join(args)} {name}: no help"
            seen += 1
        usage_end = text.index("\n\n")
        first = text[usage_end:].strip().splitlines()[0]
        assert not SECTION.match(first) or args == [], f"relay {' '.join(args)}: no description"
    assert seen > 30


def test_help_of_every_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    for args, out in every_command(capsys):
        assert out.startswith(" ".join(["usage: relay", *args]))
        if args and args not in (["queue"], ["hash-password"], ["store-copy"]):  # no config
            assert "--config FILE" in out, args
