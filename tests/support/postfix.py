"""A private Postfix instance on loopback, for tests and benchmarks that need a real MTA.

Debian's postfix package provides the binaries (`make sysdeps` installs it); each
instance has its own config directory, queue and data directory, log file and
smtpd port, so it never touches /etc/postfix or port 25 and several can run at
once. Every daemon runs unchrooted and DNS is off: everything is on 127.0.0.1.

The instance lives in a fresh directory of the system temp dir (mode 0755)
rather than in pytest's tmp_path: Postfix's daemons drop root for the
`postfix` user and open their data directory by absolute path, which pytest's
private (0700) base directory would forbid.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"

# name type private unpriv chroot wakeup maxproc command: the Debian master.cf,
# unchrooted, without the services that need a spool of their own (postscreen, etc.).
SERVICES = """\
pickup     unix  n - n 60   1 pickup
cleanup    unix  n - n -    0 cleanup
qmgr       unix  n - n 300  1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -    - trivial-rewrite
bounce     unix  - - n -    0 bounce
defer      unix  - - n -    0 bounce
trace      unix  - - n -    0 bounce
verify     unix  - - n -    1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -    - proxymap
proxywrite unix  - - n -    1 proxymap
smtp       unix  - - n -    - smtp
relay      unix  - - n -    - smtp
showq      unix  n - n -    - showq
error      unix  - - n -    - error
retry      unix  - - n -    - error
discard    unix  - - n -    - discard
lmtp       unix  - - n -    - lmtp
anvil      unix  - - n -    1 anvil
scache     unix  - - n -    1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


def base_settings(root: Path, relayhost: str) -> dict[str, str]:
    """A relay-only Postfix: loopback clients may relay, everything goes to `relayhost`."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "spool"),
        "data_directory": str(root / "data"),
        "maillog_file": str(root / "maillog"),
        "maillog_file_prefixes": str(root),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": "postfix.test",
        "mydomain": "postfix.test",
        "myorigin": "postfix.test",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "relayhost": relayhost,
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "smtpd_peername_lookup": "no",
        "smtp_tls_security_level": "none",
        "smtpd_tls_security_level": "none",
        "biff": "no",
        "message_size_limit": str(50 * 1024 * 1024),
    }


@dataclass
class PostfixInstance:
    """One running instance: `port` is its smtpd, `root` holds everything it owns."""

    root: Path
    port: int

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `postfix -c DIR ARGS`; output is kept for the assertion message."""
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def sent_queue_ids(self, to_port: int) -> dict[str, str]:
        """recipient -> queue id of each copy this instance handed to 127.0.0.1:to_port."""
        pattern = rf" ([0-9A-F]+): to=<([^>]*)>, relay=[^ ]+:{to_port},.* status=sent "
        return {rcpt: queue_id for queue_id, rcpt in re.findall(pattern, self.log())}

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 30.0) -> list[str]:
        """Lines of the mail log matching `pattern`, once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log().splitlines() if re.search(pattern, line)]
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} x {pattern!r} not in the Postfix log:\n{self.log()}")
            time.sleep(0.1)


def write_config(
    root: Path, port: int, settings: Mapping[str, str], processes: int, services: str
) -> Path:
    config_dir = root / "etc"
    config_dir.mkdir(parents=True)
    (root / "spool").mkdir(mode=0o755)  # `postfix check` creates what is inside
    main = "".join(f"{key} = {value}\n" for key, value in settings.items())
    (config_dir / "main.cf").write_text(main, encoding="ascii")
    smtpd = f"127.0.0.1:{port} inet n - n - {processes} smtpd\n"
    (config_dir / "master.cf").write_text(smtpd + SERVICES + services, encoding="ascii")
    return config_dir


def wait_for_smtpd(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(512).startswith(b"220"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no Postfix greeting on port {port} after {timeout}s")
        time.sleep(0.05)


@contextlib.contextmanager
def running_postfix(
    port: int,
    relayhost: str,
    overrides: Mapping[str, str] | None = None,
    processes: int = 20,
    services: str = "",
) -> Iterator[PostfixInstance]:
    """Start a private instance relaying everything to `relayhost`; stop and remove it after.

    overrides are main.cf settings; services are more master.cf lines."""
    root = Path(tempfile.mkdtemp(prefix="relay-postfix-"))
    root.chmod(0o755)
    instance = PostfixInstance(root, port)
    try:
        settings = base_settings(root, relayhost) | dict(overrides or {})
        write_config(root, port, settings, processes, services)
        for step in (("check",), ("start",)):
            done = instance.command(*step)
            assert done.returncode == 0, f"postfix {step[0]}: {done.stderr}{instance.log()}"
        wait_for_smtpd(port)
        yield instance
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            if instance.command("status").returncode == 0:
                instance.command("stop")
        shutil.rmtree(root, ignore_errors=True)
