"""What an operator installs: the wheel and sdist `python -m build` makes, installed into
a fresh venv, and the systemd units in packaging/, checked by systemd-analyze."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import relay

REPO = Path(__file__).resolve().parents[1]
UNITS = sorted((REPO / "packaging").glob("*.service"))
INSTALLED_BINARY = "/opt/relay/bin/relay"  # ExecStart in the units, as the README installs it
DATA_FILES = (
    "apple_mpp_ranges.txt",
    "apple_private_relay.txt",
    "crawler_networks.txt",
    "mail_security_agents.txt",
    "scanner_networks.txt",
    "SOURCES.md",
)


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path
    venv: Path  # a fresh venv with the wheel installed

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def clean_env() -> dict[str, str]:
    """The installed package only: nothing of the checkout on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """Built once per session: the wheel and the sdist, and the wheel installed."""
    root = tmp_path_factory.mktemp("dist")
    out = root / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "License classifiers are deprecated" not in done.stdout + done.stderr
    assert "`project.license` as a TOML table is deprecated" not in done.stdout + done.stderr
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600, env=clean_env(), cwd=root,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    yield Built(wheel, sdist, env_dir)


def run_installed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command of the fresh venv, from a directory outside the checkout."""
    return subprocess.run(
        list(args), cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120
    )


def test_installed_relay_version(built: Built, tmp_path: Path) -> None:
    result = run_installed(built.bin("relay"), "--version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"relay {relay.__version__}\n")


def test_installed_relay_check_config(built: Built, tmp_path: Path) -> None:
    result = run_installed(built.bin("relay"), "check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[smtp]" in result.stdout and "# config OK (<embedded defaults>)" in result.stderr
    (tmp_path / "relay.toml").write_text("[smtp]\nmax_recipents = 5\n", encoding="utf-8")
    result = run_installed(built.bin("relay"), "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "did you mean `smtp.max_recipients`?" in result.stderr


LOAD_DATA = """
import pathlib, tracking_http
from tracking_http.classify import DATA_DIR, NetworkData, load_security_agents
from tracking_http.admin.pages import create_templates
assert pathlib.Path(tracking_http.__file__).is_relative_to(pathlib.Path(__import__("sys").prefix))
data = NetworkData.load()
assert len(data.apple) == 2
print("agents", len(load_security_agents(DATA_DIR / "mail_security_agents.txt")))
create_templates().get_template("messages.html")
print("data", DATA_DIR)
"""


def test_installed_wheel_has_the_data_files_and_they_load(built: Built, tmp_path: Path) -> None:
    result = run_installed(built.bin("python"), "-c", LOAD_DATA, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data_dir = Path(result.stdout.split("data ", 1)[1].strip())
    assert data_dir.is_relative_to(built.venv)
    for name in DATA_FILES:
        assert (data_dir / name).stat().st_size > 0, name
    assert (data_dir / "apple_private_relay.txt").stat().st_size > 100_000
    assert int(result.stdout.split("agents ", 1)[1].split()[0]) > 0


def test_wheel_and_sdist_contents(built: Built) -> None:
    wheel = set(zipfile.ZipFile(built.wheel).namelist())
    for name in DATA_FILES:
        assert f"tracking_http/data/{name}" in wheel
    assert "tracking_http/admin/templates/base.html" in wheel
    assert "tracking_http/admin/static/dashboard.css" in wheel
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in wheel)
    assert not any(n.startswith("tests/") for n in wheel)
    metadata = zipfile.ZipFile(built.wheel).read(
        next(n for n in wheel if n.endswith(".dist-info/METADATA"))
    )
    assert b"License-Expression: MIT" in metadata
    with tarfile.open(built.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for wanted in ("LICENSE", "config.example.toml", "CHANGELOG.md", "tests/conftest.py"):
        assert wanted in names
    assert {f"packaging/{unit.name}" for unit in UNITS} <= names
    assert "tracking_http/data/apple_private_relay.txt" in names


# --- systemd units --------------------------------------------------------------------


def unit_settings(path: Path) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_the_units_are_there() -> None:
    assert [u.name for u in UNITS] == ["relay-http.service", "relay-smtp.service", "relay.service"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_hardening(unit: Path) -> None:
    s = unit_settings(unit)
    role = {"relay.service": "serve", "relay-smtp.service": "smtp", "relay-http.service": "http"}
    assert s["ExecStart"] == [
        f"{INSTALLED_BINARY} {role[unit.name]} --config /etc/relay/relay.toml"
    ]
    assert s["User"] == ["relay"] and s["Group"] == ["relay"]  # a dedicated user
    assert s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] == ["relay"]  # created and owned for the user
    assert s["ReadWritePaths"] == ["/var/lib/relay"] == s["WorkingDirectory"]  # the store
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]  # 25, 465, 587 (and 443)
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]  # and nothing more
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def verify(units: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on copies whose ExecStart names an executable that exists."""
    binary = tmp_path / "bin" / "relay"
    binary.parent.mkdir(exist_ok=True)
    binary.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    binary.chmod(0o755)
    copies = []
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED_BINARY, str(binary)), encoding="utf-8")
        copies.append(str(copy))
    return subprocess.run(
        ["systemd-analyze", "verify", *copies], capture_output=True, text=True, timeout=60
    )


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    result = verify(UNITS, tmp_path)
    # verify exits 0 on unknown keys and bad values, only saying so: silence is the pass.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    broken = tmp_path / "src" / "relay.service"
    broken.parent.mkdir()
    text = (REPO / "packaging" / "relay.service").read_text()
    broken.write_text(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = verify([broken], tmp_path)
    assert "Unknown key 'ProtectSytem'" in result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    """systemd's own score of the sandbox: 0 (locked down) .. 10 (exposed); OK is below 3.5."""
    verify([unit], tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=25", "--no-pager",
         str(tmp_path / unit.name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_make_run_installs_runtime_dependencies_only() -> None:
    def commands(target: str) -> str:
        done = subprocess.run(
            ["make", "-n", "-B", target], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run = commands("run")
    assert "pip install -q -e .\n" in run and "[test]" not in run
    assert "pip install -q -e '.[test]'" in commands("test")
