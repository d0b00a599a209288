"""The start banner's first-message command follows the config, and works as printed."""

from __future__ import annotations

import email
import email.policy
import ipaddress
import shlex
import subprocess
import time
from pathlib import Path

import trustme
from support.processes import relay_toml, start_relay, stop_relay

from relay.banner import first_message_command
from relay.core.config import HostPort, SmtpConfig, SmtpUser
from relay.core.passwords import hash_password

NOBODY: tuple[ipaddress.IPv4Network, ...] = ()
ALICE = SmtpUser("alice", "$argon2id$x", ("*@sales.example.com",))


def words(smtp: SmtpConfig) -> list[str]:
    lines = first_message_command(smtp)
    return shlex.split(lines[0])


def test_default_config_loopback_relays_without_auth() -> None:
    command = words(SmtpConfig())
    assert command[:3] == ["swaks", "--server", "127.0.0.1:2525"]
    assert "--auth-user" not in command and "--tls" not in command
    assert command[command.index("--from") + 1] == "you@example.com"


def test_any_address_is_reached_on_loopback() -> None:
    assert words(SmtpConfig(listen=(HostPort("0.0.0.0", 25),)))[2] == "127.0.0.1:25"
    assert words(SmtpConfig(listen=(HostPort("::", 25),)))[1:5] == [
        "--server", "::1", "--port", "25",
    ]  # fmt: skip


def test_auth_after_starttls_when_this_machine_may_not_relay() -> None:
    smtp = SmtpConfig(
        listen=(HostPort("0.0.0.0", 587),),
        tls_cert="c.pem",
        tls_key="k.pem",
        allowed_networks=NOBODY,
        users=(ALICE,),
    )
    command = words(smtp)
    assert command[2] == "127.0.0.1:587"
    assert "--tls" in command
    assert command[command.index("--auth-user") + 1] == "alice"
    assert "--auth-password" not in command  # swaks asks: no password in shell history
    assert command[command.index("--from") + 1] == "you@sales.example.com"


def test_no_starttls_when_auth_may_go_in_clear() -> None:
    smtp = SmtpConfig(
        tls_cert="c.pem", tls_key="k.pem", require_tls_for_auth=False, allowed_networks=NOBODY
    )
    command = words(smtp)
    assert "--tls" not in command and "--auth-user" in command


def test_implicit_tls_only() -> None:
    smtp = SmtpConfig(
        listen=(),
        implicit_tls_listen=(HostPort("0.0.0.0", 465),),
        tls_cert="c.pem",
        tls_key="k.pem",
        allowed_networks=NOBODY,
        users=(SmtpUser("bob", "h", ("bob@example.com",)),),
    )
    command = words(smtp)
    assert command[2] == "127.0.0.1:465" and "--tls-on-connect" in command
    assert command[command.index("--from") + 1] == "bob@example.com"


def test_auth_needed_but_no_user_says_what_to_do() -> None:
    lines = first_message_command(SmtpConfig(allowed_networks=NOBODY))
    assert "--auth-user USER" in lines[0]
    assert "relay hash-password" in lines[1]


def test_no_listener_no_command() -> None:
    assert first_message_command(SmtpConfig(listen=())) == []


def banner_command(proc: subprocess.Popen[bytes]) -> list[str]:
    assert proc.stdout is not None
    for _ in range(20):
        line = proc.stdout.readline().decode()
        if line.startswith("  swaks "):
            return shlex.split(line)
    raise AssertionError("no swaks command in the banner")


def delivered_to(outbox: Path) -> str:
    deadline = time.monotonic() + 20
    while not list((outbox / "new").glob("*.eml")):
        assert time.monotonic() < deadline, "nothing delivered"
        time.sleep(0.1)
    path = next((outbox / "new").glob("*.eml"))
    return str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["To"])


def delivered_html(outbox: Path) -> str:
    path = next((outbox / "new").glob("*.eml"))
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def test_the_printed_command_sends_as_printed(tmp_path: Path) -> None:
    # The shipped default: no pixel where it would be a short part's only image.
    toml = _toml(tmp_path, "").replace("avoid_image_only = false", "avoid_image_only = true")
    relay = start_relay(tmp_path, toml)
    try:
        result = subprocess.run(banner_command(relay.proc), capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode()
        assert delivered_to(tmp_path / "outbox") == "friend@example.net"
        html = delivered_html(tmp_path / "outbox")
        assert "/c/" in html and "/o/" in html  # the first message shows both: link and pixel
    finally:
        stop_relay(relay)


def test_the_printed_command_with_starttls_and_auth(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "relay.test")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "relay.pem"))
    smtp = (
        f'tls_cert = "{tmp_path / "relay.pem"}"\ntls_key = "{tmp_path / "relay.pem"}"\n'
        "allowed_networks = []\n"
        f'[[smtp.users]]\nname = "alice"\npassword_hash = "{hash_password("s3cret")}"\n'
        'allowed_senders = ["*@sales.example.com"]\n'
    )
    relay = start_relay(tmp_path, _toml(tmp_path, smtp))
    try:
        command = banner_command(relay.proc)
        assert "--tls" in command and "alice" in command
        result = subprocess.run(
            [*command, "--auth-password", "s3cret"], capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stdout.decode()
        assert b"STARTTLS" in result.stdout and b"235 " in result.stdout
        assert delivered_to(tmp_path / "outbox") == "friend@example.net"
    finally:
        stop_relay(relay)


def _toml(tmp_path: Path, smtp: str) -> str:
    """A relay on loopback ports delivering into tmp_path/outbox (as `make run` does)."""
    escaped = smtp.replace("{", "{{").replace("}", "}}")  # start_relay formats the ports in
    return relay_toml(f"maildir:{tmp_path / 'outbox'}", smtp=escaped)
