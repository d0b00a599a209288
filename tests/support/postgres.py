"""A private PostgreSQL cluster on loopback, for tests of the PostgreSQL store.

Debian's postgresql package provides the binaries (`make sysdeps` installs it,
and its policy-rc.d guard keeps the system's own cluster stopped); the newest
/usr/lib/postgresql/<version>/bin is used. Each server has its own data
directory, socket directory, log file and port, so it never touches the
system cluster or port 5432, and several can run at once.

initdb and postgres refuse to run as root, so when the tests run as root (as
on these machines) every server program runs as the `postgres` system user
that the package creates (subprocess's user/group switch, as `runuser -u
postgres` would do). The cluster lives in a fresh directory of the system temp
dir owned by that user, rather than in pytest's private (0700, root-owned)
tmp_path. Authentication is `trust` and the server listens on 127.0.0.1 only:
a private instance for tests, with `relay` as its superuser.

The postmaster is started directly, as a child of the test process, rather
than daemonized by `pg_ctl start`: stopping it then reaps it, where a
daemonized one is left to init, and on machines whose init reaps late
`pgrep postgres` still lists it (as a zombie) after the run.

fsync stays on by default: the store's durability tests need commits that
really reach the disk. `fsync=False` trades that for speed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from support.processes import free_port

PG_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"
SUPERUSER = "relay"
TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's binaries (or the user to run them as) are not on this machine."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb."""
    found = [
        path.parent
        for path in PG_ROOT.glob("*/bin/initdb")
        if path.parent.parent.name.isdigit() and os.access(path, os.X_OK)
    ]
    if not found:
        raise PostgresUnavailable(
            f"PostgreSQL is not installed (no {PG_ROOT}/<version>/bin/initdb): "
            "run `make sysdeps` (it installs Debian's postgresql package)"
        )
    return max(found, key=lambda bindir: int(bindir.parent.name))


def _run_as() -> tuple[int | None, int | None]:
    """The uid and gid server programs run with: the postgres user's when we are root."""
    if os.geteuid() != 0:
        return None, None
    try:
        user = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, but there is no {SYSTEM_USER!r} system user to run "
            "PostgreSQL as: run `make sysdeps` (Debian's postgresql package creates it)"
        ) from None
    return user.pw_uid, user.pw_gid


def _clean_env() -> dict[str, str]:
    """The environment without PG* variables (PGDATA, PGPORT, PGOPTIONS...) that would leak in."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


class PostgresServer:
    """One running private server; `url(dbname)` is how a test (or the relay) reaches it.

    The postmaster is a child of this process (not daemonized by `pg_ctl start`), so
    stopping it also reaps it: no process, not even a zombie, outlives `stop()`."""

    def __init__(self, *, fsync: bool = True) -> None:
        self.fsync = fsync
        self.bindir = find_bindir()
        self._uid, self._gid = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="relay-postgres-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self.port = 0
        self._postmaster: subprocess.Popen[bytes] | None = None
        atexit.register(self.stop)  # a backstop: the fixture stops it first
        try:
            self.socket_dir.mkdir()
            if self._uid is not None and self._gid is not None:
                for path in (self.root, self.socket_dir):
                    os.chown(path, self._uid, self._gid)
            self._pg(
                "initdb",
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
            self._start()
            self.create_database(SUPERUSER)  # `createdb`: the superuser's default database
        except BaseException:
            self.stop()
            raise

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that run a program as the server's user, in its directory."""
        return {
            "user": self._uid,
            "group": self._gid,
            "extra_groups": [] if self._uid is not None else None,
            "cwd": self.root,  # the postgres user may not read the caller's directory
            "env": _clean_env(),
        }

    def _pg(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one of the server's programs as the server's user; fail with its output."""
        done = subprocess.run(
            [str(self.bindir / program), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            **self._as_server_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}{self.log()}"
            )
        return done

    def _start(self, attempts: int = 3) -> None:
        """Start the postmaster on a free port and wait until it takes connections."""
        durability = (
            ["-c", "fsync=on"]
            if self.fsync
            else ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        )
        for attempt in range(attempts):
            self.port = free_port()
            with self.logfile.open("ab") as log:
                self._postmaster = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.data),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-p",
                        str(self.port),
                        "-k",
                        str(self.socket_dir),
                        *durability,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # a Ctrl-C reaches pytest, whose teardown stops it
                    **self._as_server_user(),
                )
            if self._wait_ready():
                return
            # free_port is a race: another process may have taken the port meanwhile.
            taken = re.search(r"could not bind|Address already in use", self.log())
            if attempt + 1 < attempts and taken:
                continue
            raise RuntimeError(f"postgres did not start on port {self.port}:\n{self.log()}")

    def _wait_ready(self) -> bool:
        """True once the server takes connections; False if it exited first."""
        assert self._postmaster is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self._postmaster.poll() is not None:
                return False
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"postgres not ready after {TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def url(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """A sync, autocommit connection (as the superuser) to one of the server's databases."""
        return psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=int(TIMEOUT))

    def create_database(self, name: str) -> str:
        """Create the (empty) database `name`; returns its URL."""
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name`, closing any connection a test left open to it."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self) -> None:
        """Stop the server at once (no checkpoint: the data goes too) and remove its directory.

        Safe to call more than once."""
        atexit.unregister(self.stop)
        postmaster, self._postmaster = self._postmaster, None
        if postmaster is not None and postmaster.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            try:
                postmaster.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                postmaster.kill()
                postmaster.wait()
        shutil.rmtree(self.root, ignore_errors=True)
