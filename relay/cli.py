"""The `relay` command: one function per subcommand.

This is the only module that wires the SMTP side and the HTTP side together.
Every start-up problem an operator can cause (bad config, port in use,
unreadable TLS key) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import logging
import signal
import sqlite3
import ssl
import sys
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from tqdm import tqdm

from relay import __version__
from relay.banner import first_message_command
from relay.core.config import Config, ConfigError, HostPort, load_config, render_config
from relay.core.config.checks import is_loopback_host
from relay.core.limits import RateLimitedLog, quiet_loop_errors, raise_file_limit
from relay.core.logs import setup_logging
from relay.core.metrics import DeliveryMetrics, Metrics, share_across_processes, stop_sharing
from relay.core.passwords import hash_password
from relay.core.store import Store, StoreUnavailable, open_store, store_location
from relay.core.store.sqlite.backup import backup_store
from relay.core.tls import server_context
from relay.core.tokens import TokenCodec
from relay.delivery.child import DeliveryPool, DeliveryProcessError, serve_parent
from relay.delivery.role import deliver
from relay.delivery.signing import open_signer
from relay.delivery.upstream import open_upstream
from relay.dkim import DkimKeyError, DkimSigner
from relay.queue_cli import add_config_option, add_queue_parser, run_queue_command
from relay.retention import RetentionPurger, describe, erase_address
from relay.smtp.server import SmtpServers, start_smtp
from relay.store_cli import add_store_parsers, run_migrate, run_store_copy
from relay.webhooks import WebhookDispatcher
from relay.workers import (
    ROLES,
    ParentLink,
    WorkerError,
    WorkerPool,
    check_ports_free,
    extra_workers,
)
from tracking_http.app import (
    RECONFIGURE,
    RELOAD_NETWORKS,
    Reconfigure,
    ReloadNetworks,
    create_admin_app,
    create_tracking_app,
)
from tracking_http.guard import GuardedSite, GuardSettings
from tracking_http.health import RunState
from tracking_http.netdata import DataError, run_update
from tracking_http.notify import EventBroker, EventSink, recorded_sink

log = logging.getLogger("relay")

EXIT_USAGE = 2
GC_THRESHOLDS = (10_000, 20, 100)  # see quiet_collector
# The peer (a reverse proxy's address behind one), request line, status, size, seconds, agent.
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tf "%{User-Agent}i"'
CHILD_STOP_GRACE = 45.0  # the delivery process drains for up to 30 s (worker.STOP_GRACE_SECONDS)


class StartupError(Exception):
    """A problem the operator must fix before the relay can start."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    handler = {
        "serve": _cmd_serve,
        "smtp": _cmd_smtp,
        "http": _cmd_http,
        "deliver": _cmd_deliver,
        "check-config": _cmd_check_config,
        "hash-password": _cmd_hash_password,
        "erase": _cmd_erase,
        "queue": run_queue_command,
        "update-data": _cmd_update_data,
        "backup": _cmd_backup,
        "migrate": run_migrate,
        "store-copy": run_store_copy,
    }[args.command]
    try:
        return handler(args)
    except (ConfigError, StartupError, WorkerError) as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay", description="Mail-tracking SMTP relay with open and click tracking."
    )
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    helps = {
        "serve": "SMTP relay, delivery workers, tracking HTTP and admin HTTP in one process",
        "smtp": "the SMTP relay and delivery workers only",
        "http": "the tracking and admin HTTP servers only",
        "deliver": "the delivery worker only (smtp and serve start one themselves)",
        "check-config": "validate and print the effective config, secrets redacted",
        "erase": "delete a recipient's events and address from the store; prints what went",
        "backup": "write a consistent copy of the store (while the relay runs) to FILE",
        "update-data": "fetch the published network lists (Apple Private Relay, crawlers, "
        "mail-security vendors) into tracking.data_dir",
    }
    for name, text in helps.items():
        cmd = sub.add_parser(name, help=text, description=text)
        add_config_option(cmd)
        cmd.add_argument(
            "--log-level",
            default=None,
            choices=["debug", "info", "warning", "error", "DEBUG", "INFO", "WARNING", "ERROR"],
            metavar="LEVEL",
            help="debug, info, warning or error (default: [log] level in the config, info)",
        )
    sub.choices["erase"].add_argument("address", help="the recipient address to erase")
    sub.choices["backup"].add_argument("file", type=Path, help="where the copy goes")
    sub.choices["update-data"].add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="fetch one list from another address (a mirror); repeatable",
    )
    sub.choices["update-data"].add_argument(
        "--force",
        action="store_true",
        help="install a list even when it lost more than half of its networks",
    )
    # Set by the smtp and serve roles for the delivery process they start (delivery/child.py).
    sub.choices["deliver"].add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    # Set for the smtp.workers and tracking.workers processes they start (relay/workers.py).
    for role in ("smtp", "http"):
        sub.choices[role].add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    add_queue_parser(sub)
    add_store_parsers(sub)
    sub.add_parser(
        "hash-password",
        help="read a password and print a hash for [[smtp.users]]",
        description="Reads a password from the terminal (asked twice), or one line of stdin "
        "when stdin is not a terminal, and prints an argon2id hash.",
    )
    return parser


def _cmd_erase(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        counts = asyncio.run(erase_address(config, args.address))
    except StoreUnavailable as exc:
        raise StartupError(f"{store_location(config.store)[0]}: {exc}") from exc
    print(f"erased {args.address}: {describe(counts)}")
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    target: Path = args.file
    if config.store.url:  # PostgreSQL has its own tools for this
        raise StartupError(
            "backup: the store is PostgreSQL (store.url): use pg_dump, or your database's"
            " own backups; relay backup copies a SQLite store"
        )
    if target.resolve() == Path(config.store.path).resolve():
        raise StartupError("backup: FILE is the store itself")
    with tqdm(total=None, unit="page", desc="backup", disable=None, leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            size = backup_store(config.store.path, target, progress)
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"backup: {exc}") from exc
    print(f"backed up {config.store.path} to {target} ({size} bytes)")
    return 0


def _cmd_update_data(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    urls: dict[str, str] = {}
    for item in args.source:
        name, equals, url = item.partition("=")
        if not equals or not url.startswith(("http://", "https://")):
            raise StartupError(f"--source {item!r}: expected NAME=http(s)://...")
        urls[name.strip()] = url.strip()
    data_dir = Path(config.tracking.data_dir or ".")
    try:
        report = asyncio.run(run_update(data_dir, urls, force=args.force))
    except DataError as exc:
        raise StartupError(f"update-data: {exc}") from exc
    if report.unreachable and not report.installed:
        print(
            f"relay: update-data: no source could be reached ({report.unreachable[0]}); "
            "nothing was changed",
            file=sys.stderr,
        )
        return 1
    for name, count in report.installed.items():
        print(f"installed {data_dir / name}: {count} networks")
    for name, why in report.refused.items():
        print(f"relay: update-data: {name} not updated: {why}", file=sys.stderr)
    if report.installed:
        print("the tracking server reads them within a minute (at once on SIGHUP)")
    return 0 if report.ok else 1


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sys.stdout.write(render_config(config))
    print(f"# config OK ({config.source})", file=sys.stderr)
    return 0


def _cmd_hash_password(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise StartupError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise StartupError("empty password")
    print(hash_password(password))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    return _run(args, smtp=True, http=True)


def _cmd_smtp(args: argparse.Namespace) -> int:
    return _run(args, smtp=True, http=False)


def _cmd_http(args: argparse.Namespace) -> int:
    return _run(args, smtp=False, http=True)


def _cmd_deliver(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _setup_logging(args, config)
    asyncio.run(_deliver_role(config, child=args.child))
    return 0


def _run(args: argparse.Namespace, *, smtp: bool, http: bool) -> int:
    if getattr(args, "worker", False):  # serve has no --worker
        return _run_worker(args, smtp=smtp)
    config = load_config(args.config)
    _setup_logging(args, config)
    # The delivery process and the workers read the same config the same way (same cwd).
    options = ["--log-level", args.log_level] if args.log_level else []
    if args.config is not None:
        options += ["--config", str(args.config)]
    child = [sys.executable, "-m", "relay", "deliver", "--child", *options]
    workers = {role: [sys.executable, "-m", "relay", role, "--worker", *options] for role in ROLES}
    asyncio.run(
        _serve(
            config,
            smtp=smtp,
            http=http,
            child=child,
            workers=workers,
            path=args.config,
            level=args.log_level,
        )
    )
    return 0


def _run_worker(args: argparse.Namespace, *, smtp: bool) -> int:
    """`relay smtp --worker`, `relay http --worker`: one more process on the SMTP or the
    tracking listener, started by a relay (relay/workers.py), which prints its start-up
    problem as its own one line."""
    parent = ParentLink()
    try:
        config = load_config(args.config)
        _setup_logging(args, config)
        asyncio.run(_worker(config, parent, smtp=smtp, path=args.config, level=args.log_level))
    except (ConfigError, StartupError, WorkerError) as exc:
        parent.failed(str(exc))
        return EXIT_USAGE
    return 0


def _setup_logging(args: argparse.Namespace, config: Config) -> None:
    """[log] level and format; --log-level wins when given."""
    setup_logging(args.log_level or config.log.level, config.log.format)


async def _deliver_role(config: Config, *, child: bool) -> None:
    """`relay deliver`: the child of an smtp/serve role (stdin/stdout), or on its own."""
    signer = _dkim_signer(config)
    store = await _open_store(config)
    try:
        codec = TokenCodec(list(config.tracking.secrets) or await store.secrets())

        async def run(metrics: DeliveryMetrics | None, wake: asyncio.Event) -> None:
            await deliver(config, store, codec, signer, metrics, wake)

        if child:
            # Ctrl-C and `systemctl stop` signal the whole group: the parent stops this
            # child by closing its stdin once the front is drained, and the child then
            # finishes its copies in flight (a signal here would cut them short).
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            await serve_parent(run)
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        delivering = asyncio.create_task(run(None, asyncio.Event()))
        await stop.wait()
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
    finally:
        with contextlib.suppress(Exception):
            await store.close()


async def _open_store(config: Config, *, events_process: bool = False) -> Store:
    store = open_store(config.store, events_process=events_process)
    try:
        await store.open()
    except Exception as exc:
        key, where = store_location(config.store)
        raise StartupError(f"{key}: cannot open {where}: {exc}") from exc
    return store


@dataclass
class _Running:
    """What _start brought up, so _stop can take it down in reverse order."""

    store: Store
    smtp: SmtpServers | None = None
    delivery: DeliveryPool | None = None  # upstream.delivery_process
    delivering: asyncio.Task[None] | None = None  # otherwise, in this process
    runners: list[web.AppRunner] = field(default_factory=list)
    purger: RetentionPurger | None = None
    webhooks: WebhookDispatcher | None = None
    reload_networks: ReloadNetworks | None = None
    reconfigure_tracking: Reconfigure | None = None
    state: RunState = field(default_factory=RunState)
    tracking_tls: ssl.SSLContext | None = None  # tracking.tls_cert: reloaded on SIGHUP
    config: Config = field(default_factory=Config)
    config_path: Path | None = None  # what SIGHUP reads again
    log_level: str | None = None  # --log-level, which SIGHUP keeps
    reloads: set[asyncio.Task[None]] = field(default_factory=set)  # SIGHUPs in progress
    workers: list[WorkerPool] = field(default_factory=list)  # smtp.workers, tracking.workers
    metrics_dir: str | None = None  # with workers: every process's counters (core/metrics.py)
    worker: bool = False  # this is one of those workers


async def _serve(
    config: Config,
    *,
    smtp: bool,
    http: bool,
    child: list[str],
    workers: dict[str, list[str]] | None = None,
    path: Path | None = None,
    level: str | None = None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    quiet_loop_errors(loop, RateLimitedLog(log))
    raise_file_limit()
    running = await _start(config, smtp=smtp, http=http, child=child, workers=workers or {})
    running.config, running.config_path, running.log_level = config, path, level
    quiet_collector()
    _reload_on_hangup(running)
    try:
        _print_banner(config, smtp=smtp, http=http)
        if smtp and (warning := base_url_warning(config)):
            log.warning("%s", warning)
        await stop.wait()
        log.info("stopping: no new connections; finishing what is in flight")
    finally:
        await _stop(running)


async def _start(
    config: Config,
    *,
    smtp: bool,
    http: bool,
    child: list[str],
    workers: dict[str, list[str]] | None = None,
) -> _Running:
    """workers: the command of each role's workers (smtp.workers, tracking.workers)."""
    signer = _dkim_signer(config) if smtp else None
    # relay http: tracking hits are committed by a writer of their own (the store's business).
    store = await _open_store(config, events_process=http)
    running = _Running(store=store)
    try:
        if config.tracking.privacy.retention > 0:
            running.purger = RetentionPurger(store, config.tracking.privacy.retention)
            running.purger.start()
        keys = list(config.tracking.secrets) or await store.secrets()
        codec = TokenCodec(keys)
        extra = extra_workers(config, smtp=smtp, http=http)
        if extra:  # before anything that counts: every process's counters in one /metrics
            running.metrics_dir = share_across_processes()
        metrics = Metrics(running.metrics_dir)  # /metrics shows both roles' counters
        if smtp:
            # Whoever delivers opens the upstream itself; a broken one must still stop us here.
            await open_upstream(config.upstream, helo_name=config.smtp.hostname).close()
            if config.upstream.delivery_process:
                running.delivery = DeliveryPool(child, metrics, config.upstream.delivery_workers)
                try:
                    await running.delivery.start()
                except DeliveryProcessError as exc:
                    raise StartupError(f"upstream.delivery_process: {exc}") from exc
                wake = running.delivery.wake
            else:
                woken = asyncio.Event()
                job = deliver(config, store, codec, signer, metrics, woken)
                running.delivering = asyncio.create_task(job, name="delivery")
                wake = woken.set
            shared = "smtp" in extra
            if shared:
                check_ports_free(config.smtp.listen, "smtp.listen")
                check_ports_free(config.smtp.implicit_tls_listen, "smtp.implicit_tls_listen")
            starting = start_smtp(config, store, wake, metrics=metrics, reuse_port=shared)
            running.smtp = await _bind("smtp", starting)
            if shared:
                pool = WorkerPool("smtp", (workers or {})["smtp"], extra["smtp"], on_wake=wake)
                await _start_workers(running, pool, metrics)
        if http:
            broker = EventBroker()  # one live feed: recording -> streams
            sink = recorded_sink(broker, metrics)
            await _start_tracking(running, config, codec, sink, metrics, shared="http" in extra)
            if "http" in extra:  # their events reach the live feed through the store
                pool = WorkerPool("http", (workers or {})["http"], extra["http"])
                await _start_workers(running, pool, metrics)
            admin = create_admin_app(config, store, metrics, broker, state=running.state)
            a = config.admin
            limits = GuardSettings(
                a.max_connections, a.max_connections_per_address, a.header_timeout, a.idle_timeout
            )
            await _start_site(running, admin, a.listen, "admin.listen", limits, a.access_log)
            # The HTTP role sends every webhook, the SMTP role's delivery outcomes included.
            running.webhooks = WebhookDispatcher(config.webhooks, store, metrics)
            await running.webhooks.start()
    except BaseException:
        await _stop(running)
        raise
    return running


async def _start_tracking(
    running: _Running,
    config: Config,
    codec: TokenCodec,
    sink: EventSink,
    metrics: Metrics,
    *,
    shared: bool,
) -> None:
    """The tracking listener; shared: bound with SO_REUSEPORT, for tracking.workers."""
    try:
        tracking = create_tracking_app(
            config, running.store, codec, sink, state=running.state, metrics=metrics
        )
    except (OSError, ValueError) as exc:
        raise StartupError(f"tracking.data_dir: network data unusable: {exc}") from exc
    running.reload_networks = tracking[RELOAD_NETWORKS]
    running.reconfigure_tracking = tracking[RECONFIGURE]
    t = config.tracking
    limits = GuardSettings(
        t.max_connections,
        t.max_connections_per_address,
        t.header_timeout,
        t.idle_timeout,
        exempt=t.trusted_proxies,  # every reader arrives through them
    )
    running.tracking_tls = _server_context(t.tls_cert, t.tls_key, "tracking.tls_cert")
    if shared and not running.worker:
        check_ports_free(t.listen, "tracking.listen")
    await _start_site(
        running,
        tracking,
        t.listen,
        "tracking.listen",
        limits,
        t.access_log,
        running.tracking_tls,
        reuse_port=shared,
    )


async def _start_workers(running: _Running, pool: WorkerPool, metrics: Metrics) -> None:
    """WorkerError (one line) when one of them cannot start; their gauges go when they do."""
    pool.on_exit = metrics.process_gone
    running.workers.append(pool)
    await pool.start()


async def _worker(
    config: Config, parent: ParentLink, *, smtp: bool, path: Path | None, level: str | None
) -> None:
    """A worker's life: listen, say ready, serve until the relay closes our stdin, drain."""
    loop = asyncio.get_running_loop()
    quiet_loop_errors(loop, RateLimitedLog(log))
    raise_file_limit()
    store = await _open_store(config, events_process=not smtp)
    running = _Running(store=store, worker=True, config=config, config_path=path, log_level=level)
    try:
        metrics = Metrics()  # multi-process mode (inherited): the relay's /metrics counts it
        if smtp:
            starting = start_smtp(config, store, parent.wake, metrics=metrics, reuse_port=True)
            running.smtp = await _bind("smtp", starting)
        else:
            codec = TokenCodec(list(config.tracking.secrets) or await store.secrets())
            sink = recorded_sink(None, metrics)  # the relay's live feed reads the store
            await _start_tracking(running, config, codec, sink, metrics, shared=True)
        quiet_collector()
        _reload_on_hangup(running)
        await parent.ready()
        await parent.stopped()
    finally:
        await _stop(running)


def _reload_on_hangup(running: _Running) -> None:
    def hangup() -> None:
        task = asyncio.create_task(_reload(running))
        running.reloads.add(task)
        task.add_done_callback(running.reloads.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)


def quiet_collector() -> None:
    """Python's default thresholds run a full collection every ~70,000 allocations, and each
    one walks every live object: with thousands of open connections (a flood, or just many
    readers) that is a 100-150 ms pause every few seconds, the p99 of every pixel. Objects
    made at start-up are frozen out of collection, and full collections come ~300 times
    more rarely; cyclic garbage still goes, it waits longer."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# Keys that only a restart applies: sockets are bound, the store is open, the delivery
# process is started with them. SIGHUP says which of these changed.
RESTART_KEYS = (
    "smtp.listen",
    "smtp.implicit_tls_listen",
    "smtp.max_sessions",
    "smtp.max_sessions_per_address",
    "smtp.command_timeout",
    "smtp.session_timeout",
    "smtp.workers",
    "tracking.listen",
    "tracking.trusted_proxies",
    "tracking.max_connections",
    "tracking.max_connections_per_address",
    "tracking.header_timeout",
    "tracking.idle_timeout",
    "tracking.access_log",
    "tracking.secrets",
    "tracking.workers",
    "admin.listen",
    "admin.token",
    "admin.max_connections",
    "admin.max_connections_per_address",
    "admin.header_timeout",
    "admin.idle_timeout",
    "admin.access_log",
    "store.path",
    "store.url",
    "upstream.delivery_process",
    "upstream.delivery_workers",
)


async def _reload(running: _Running) -> None:
    """SIGHUP: the config file read again and what can change without a restart applied:
    SMTP policy (users, networks, limits, tracking policy) and its certificate, the
    classifier's settings and network data, webhooks, log level and format, and the
    delivery process (restarted after draining, so it reads the new file). A config that
    does not load changes nothing: one line names the key."""
    try:
        config = load_config(running.config_path)
    except ConfigError as exc:
        log.error("SIGHUP: the new config is refused, the old one stays: %s", exc)
        return
    old = running.config
    try:
        if running.smtp is not None:
            running.smtp.reload(config)
    except (OSError, ssl.SSLError) as exc:
        log.error("SIGHUP: smtp.tls_cert unusable, the old config stays: %s", exc)
        return
    tracking = config.tracking
    if running.tracking_tls is not None and tracking.tls_cert:
        try:  # the same context: the next handshakes present the new certificate
            running.tracking_tls.load_cert_chain(tracking.tls_cert, tracking.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            log.error("SIGHUP: tracking.tls_cert unusable, the old one stays: %s", exc)
    running.config = config
    for pool in running.workers:  # each reads the file again itself
        pool.hangup()
    setup_logging(running.log_level or config.log.level, config.log.format)
    if running.reconfigure_tracking is not None:
        await running.reconfigure_tracking(config.tracking)
    if running.webhooks is not None:
        await running.webhooks.reconfigure(config.webhooks)
    if running.delivery is not None and _delivery_changed(old, config):
        await running.delivery.restart(grace=CHILD_STOP_GRACE)
        log.info("SIGHUP: delivery process restarted with the new config")
    changed = [key for key in RESTART_KEYS if _value(old, key) != _value(config, key)]
    if changed and not running.worker:  # said once, by the relay
        log.warning("SIGHUP: %s changed; a restart applies it", ", ".join(changed))
    log.info("SIGHUP: config %s reloaded", config.source)


def _value(config: Config, key: str) -> object:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def _delivery_changed(old: Config, new: Config) -> bool:
    """What the delivery process reads: upstream, DKIM, and the tracking policy it applies."""
    return (old.upstream, old.dkim, old.tracking) != (new.upstream, new.dkim, new.tracking)


def _server_context(cert: str, key: str, name: str) -> ssl.SSLContext | None:
    """server_context, its failure as one line naming the key."""
    try:
        return server_context(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"{name}: certificate or key unusable: {exc}") from exc


def _dkim_signer(config: Config) -> DkimSigner | None:
    """Read and try the DKIM key before anything listens: a broken key is a start-up error."""
    try:
        return open_signer(config)
    except DkimKeyError as exc:
        raise StartupError(f"dkim.private_key: {exc}") from exc


async def _bind(key: str, starting: Awaitable[SmtpServers]) -> SmtpServers:
    """Turn bind and TLS errors into one line naming the config key."""
    try:
        return await starting
    except ssl.SSLError as exc:
        raise StartupError(f"{key}: TLS certificate or key unusable: {exc}") from exc
    except OSError as exc:
        raise StartupError(f"{key}.listen: cannot listen: {exc.strerror or exc}") from exc


async def _start_site(
    running: _Running,
    app: web.Application,
    addresses: Sequence[HostPort],
    key: str,
    limits: GuardSettings,
    access: bool,
    context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
) -> None:
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger(f"{key.split('.')[0]}.access") if access else None,
        access_log_format=ACCESS_LOG_FORMAT,
        handle_signals=False,
        shutdown_timeout=5,
        keepalive_timeout=limits.idle_timeout,
    )
    await runner.setup()
    running.runners.append(runner)
    for address in addresses:
        site = GuardedSite(
            runner,
            address.host,
            address.port,
            limits,
            ssl_context=context,
            reuse_port=reuse_port or None,
        )
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"{key}: cannot listen on {address}: {exc.strerror or exc}") from exc


async def _stop(running: _Running) -> None:
    running.state.draining = True  # /readyz says 503 while the rest finishes
    workers = asyncio.gather(*(pool.stop(CHILD_STOP_GRACE) for pool in running.workers))
    if running.purger is not None:
        await running.purger.stop()
    if running.smtp is not None:
        await running.smtp.close()
    if running.delivery is not None:
        await running.delivery.stop(grace=CHILD_STOP_GRACE)
    if running.delivering is not None:
        running.delivering.cancel()  # it drains the copies in flight first
        with contextlib.suppress(asyncio.CancelledError):
            await running.delivering
    for runner in reversed(running.runners):
        await runner.cleanup()
    if running.webhooks is not None:
        await running.webhooks.stop()
    await workers  # they drained meanwhile
    with contextlib.suppress(Exception):
        await running.store.close()
    if running.metrics_dir is not None:
        stop_sharing(running.metrics_dir)


def base_url_warning(config: Config) -> str:
    """One line when mail from other hosts would carry links nobody else can follow."""
    if all(is_loopback_host(address.host) for address in config.smtp.listen):
        return ""
    url = urlsplit(config.tracking.base_url)
    if is_loopback_host(url.hostname or ""):
        return (
            f"tracking.base_url is {config.tracking.base_url}: recipients cannot reach it; "
            "set it to the public https:// address of the tracking listener"
        )
    if url.scheme != "https":
        return (
            f"tracking.base_url is {config.tracking.base_url}: plain http links are flagged by "
            "filters and browsers; use https:// (a reverse proxy or tracking TLS)"
        )
    return ""


def _print_banner(config: Config, *, smtp: bool, http: bool) -> None:
    lines = [f"relay: config {config.source}; store {store_location(config.store)[1]}"]
    if smtp:
        plain = ", ".join(str(a) for a in config.smtp.listen) + _processes(config.smtp.workers)
        lines.append(f"  SMTP            {plain}")
        if config.smtp.implicit_tls_listen:
            tls = ", ".join(str(a) for a in config.smtp.implicit_tls_listen)
            lines.append(f"  SMTP (TLS)      {tls}")
        lines.append(f"  upstream        {_redact_url(config.upstream.url)}")
    if http:
        tracking = ", ".join(str(a) for a in config.tracking.listen)
        lines.append(f"  tracking HTTP   {tracking}{_processes(config.tracking.workers)}")
        lines.append(f"  admin HTTP      {', '.join(str(a) for a in config.admin.listen)}")
    command = first_message_command(config.smtp) if smtp else []
    if command:
        lines.append("Send a first message:")
        lines += command
    print("\n".join(lines), flush=True)


def _processes(workers: int) -> str:
    return f" ({workers} processes)" if workers > 1 else ""


def _redact_url(url: str) -> str:
    """Never print credentials that someone put in the upstream URL."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        return f"{scheme}://<redacted>@{rest.split('@', 1)[1]}"
    return url
