"""Configuration: TOML parsed once into frozen dataclasses.

Every default and every check lives in this package (the dataclasses in
schema, value parsers in checks, typed table access in reader, the TOML
writer in toml), so the rest of the code can trust the values it is handed.
Errors name the offending key (``ConfigError``). Import from here, not from
the modules.

Relative paths (store.path, the maildir path, TLS files, the DKIM key) are
relative to the current directory of the process, like the default ./relay.toml.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from relay.core.config import checks
from relay.core.config.reader import (
    ConfigError,
    TomlTable,
    dotted_keys,
    expects,
    read_toml_file,
)
from relay.core.config.schema import (
    AdminConfig,
    Config,
    DkimConfig,
    HostPort,
    LogConfig,
    Network,
    PrivacyConfig,
    SmtpConfig,
    SmtpUser,
    StoreConfig,
    TrackingConfig,
    TrackingPolicy,
    UpstreamConfig,
    WebhookConfig,
)
from relay.core.config.toml import write_toml

__all__ = [
    "AdminConfig",
    "Config",
    "ConfigError",
    "DkimConfig",
    "HostPort",
    "LogConfig",
    "Network",
    "PrivacyConfig",
    "SmtpConfig",
    "SmtpUser",
    "StoreConfig",
    "TrackingConfig",
    "TrackingPolicy",
    "UpstreamConfig",
    "WebhookConfig",
    "load_config",
    "render_config",
]

DEFAULT_PATH = Path("relay.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def load_config(path: Path | None) -> Config:
    """Read ``path`` (or ./relay.toml, or the embedded defaults) into a Config.

    Raises ConfigError naming the key on any unknown key, wrong type or bad value.
    """
    if path is None:
        if not DEFAULT_PATH.exists():
            return Config()
        path = DEFAULT_PATH
    everywhere = dotted_keys(Config, skip=("source",))  # for "did you mean ...?"
    root = TomlTable(read_toml_file(path), "", _keys(Config, skip=("source",)), everywhere)
    return Config(
        smtp=_smtp(root.table("smtp", _keys(SmtpConfig))),
        upstream=_upstream(root.table("upstream", _keys(UpstreamConfig))),
        tracking=_tracking(root.table("tracking", _keys(TrackingConfig))),
        admin=_admin(root.table("admin", _keys(AdminConfig))),
        store=_store(root.table("store", _keys(StoreConfig))),
        dkim=_dkim(root.table("dkim", _keys(DkimConfig))) if root.has("dkim") else None,
        webhooks=tuple(_webhook(t) for t in root.tables("webhooks", _keys(WebhookConfig))),
        log=_log(root.table("log", _keys(LogConfig))),
        source=str(path),
    )


def _store(t: TomlTable) -> StoreConfig:
    return StoreConfig(
        path=_required_str(t, "path", "./relay.db"),
        url=t.convert("url", "", checks.check_store_url),
    )


def _log(t: TomlTable) -> LogConfig:
    d = LogConfig()
    return LogConfig(
        level=t.convert("level", d.level, _choice(LOG_LEVELS)),
        format=t.convert("format", d.format, _choice(LOG_FORMATS)),
    )


def _keys(cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    """The TOML keys of a section are its dataclass's field names."""
    return [f.name for f in fields(cls) if f.name not in skip]


def _host_port(text: str) -> HostPort:
    return HostPort(*checks.parse_host_port(text))


def _file_or_empty(path: str) -> str:
    return checks.check_readable(path) if path else ""


@expects(checks.DURATION_EXPECTED)
def _lease_time(text: str) -> float:
    """At least MIN_LEASE: a renewal every third of it must get through a busy store."""
    seconds = _positive_duration(text)
    if seconds < MIN_LEASE:
        raise ValueError(f"must be at least {MIN_LEASE:.0f}s, got {text!r}")
    return seconds


MIN_LEASE = 3.0


@expects(checks.DURATION_EXPECTED)
def _positive_duration(text: str) -> float:
    seconds = checks.parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be longer than 0, got {text!r}")
    return seconds


def _required_str(table: TomlTable, name: str, default: str | None = None) -> str:
    """A string that may not be empty (and must be given when there is no default)."""
    if default is None and not table.has(name):
        raise table.error(name, "required")
    value = table.get_str(name, default or "")
    if not value.strip():
        raise table.error(name, "may not be empty")
    return value


def _smtp(t: TomlTable) -> SmtpConfig:
    d = SmtpConfig()
    tls_cert = t.convert("tls_cert", d.tls_cert, _file_or_empty)
    tls_key = t.convert("tls_key", d.tls_key, _file_or_empty)
    if tls_cert and not tls_key:
        raise t.error("tls_key", "required when smtp.tls_cert is set")
    if tls_key and not tls_cert:
        raise t.error("tls_cert", "required when smtp.tls_key is set")
    implicit = t.convert_list("implicit_tls_listen", d.implicit_tls_listen, _host_port)
    if implicit and not tls_cert:
        raise t.error("implicit_tls_listen", "needs smtp.tls_cert and smtp.tls_key")
    users = tuple(_user(u) for u in t.tables("users", _keys(SmtpUser)))
    names = [user.name for user in users]
    if len(set(names)) != len(names):
        raise t.error("users", "two users have the same name")
    return SmtpConfig(
        listen=t.convert_list("listen", d.listen, _host_port),
        implicit_tls_listen=implicit,
        hostname=t.convert("hostname", d.hostname, checks.check_hostname),
        tls_cert=tls_cert,
        tls_key=tls_key,
        require_tls_for_auth=t.get_bool("require_tls_for_auth", d.require_tls_for_auth),
        auth_failures_per_address=t.get_positive_int(
            "auth_failures_per_address", d.auth_failures_per_address
        ),
        auth_failures_per_user=t.get_positive_int(
            "auth_failures_per_user", d.auth_failures_per_user
        ),
        auth_failure_window=t.convert(
            "auth_failure_window", d.auth_failure_window, _positive_duration
        ),
        auth_reply_delay=t.convert("auth_reply_delay", d.auth_reply_delay, checks.parse_duration),
        allowed_networks=t.convert_list(
            "allowed_networks", d.allowed_networks, checks.parse_network
        ),
        max_message_size=t.get_positive_int("max_message_size", d.max_message_size),
        max_sessions=t.get_positive_int("max_sessions", d.max_sessions),
        max_sessions_per_address=t.get_positive_int(
            "max_sessions_per_address", d.max_sessions_per_address
        ),
        command_timeout=t.convert("command_timeout", d.command_timeout, _positive_duration),
        session_timeout=t.convert("session_timeout", d.session_timeout, _positive_duration),
        workers=t.get_worker_count("workers", d.workers),
        max_recipients=t.get_positive_int("max_recipients", d.max_recipients),
        max_queued_copies=t.get_positive_int("max_queued_copies", d.max_queued_copies),
        flow_delay=t.convert("flow_delay", d.flow_delay, checks.parse_duration),
        users=users,
        pass_through_tracking_headers=t.get_bool(
            "pass_through_tracking_headers", d.pass_through_tracking_headers
        ),
    )


def _user(t: TomlTable) -> SmtpUser:
    return SmtpUser(
        name=_required_str(t, "name"),
        password_hash=_required_str(t, "password_hash"),
        allowed_senders=t.convert_list("allowed_senders", (), checks.check_address_pattern),
    )


def _upstream(t: TomlTable) -> UpstreamConfig:
    d = UpstreamConfig()
    schedule = t.convert_list("retry_schedule", d.retry_schedule, _positive_duration)
    if not schedule:
        raise t.error("retry_schedule", "needs at least one interval")
    return UpstreamConfig(
        url=t.convert("url", d.url, checks.check_upstream_url),
        username=t.get_str("username", d.username),
        password=t.get_str("password", d.password),
        max_connections=t.get_positive_int("max_connections", d.max_connections),
        retry_schedule=schedule,
        max_queue_age=t.convert("max_queue_age", d.max_queue_age, _positive_duration),
        timeout=t.convert("timeout", d.timeout, _positive_duration),
        tls_verify=t.get_bool("tls_verify", d.tls_verify),
        opportunistic_tls=t.get_bool("opportunistic_tls", d.opportunistic_tls),
        delivery_process=t.get_bool("delivery_process", d.delivery_process),
        delivery_workers=t.get_worker_count("delivery_workers", d.delivery_workers),
        lease_time=t.convert("lease_time", d.lease_time, _lease_time),
        ca_file=t.convert("ca_file", d.ca_file, _file_or_empty),
    )


def _tracking(t: TomlTable) -> TrackingConfig:
    d = TrackingConfig()
    secrets = t.get_str_list("secrets", d.secrets)
    tls_cert = t.convert("tls_cert", d.tls_cert, _file_or_empty)
    tls_key = t.convert("tls_key", d.tls_key, _file_or_empty)
    if bool(tls_cert) != bool(tls_key):
        missing = "tls_key" if tls_cert else "tls_cert"
        raise t.error(missing, "tracking.tls_cert and tracking.tls_key go together")
    if not all(secret.strip() for secret in secrets):
        raise t.error("secrets", "a secret may not be empty")
    position = t.convert("pixel_position", d.pixel_position, _choice(checks.PIXEL_POSITIONS))
    return TrackingConfig(
        base_url=t.convert("base_url", d.base_url, checks.parse_http_url),
        listen=t.convert_list("listen", d.listen, _host_port),
        secrets=secrets,
        opens=t.get_bool("opens", d.opens),
        clicks=t.get_bool("clicks", d.clicks),
        per_recipient=t.get_bool("per_recipient", d.per_recipient),
        pixel_position=position,
        honeypot=t.get_bool("honeypot", d.honeypot),
        bot_click_window=t.convert("bot_click_window", d.bot_click_window, checks.parse_duration),
        bot_open_window=t.convert("bot_open_window", d.bot_open_window, checks.parse_duration),
        skip_bare_url_links=t.get_bool("skip_bare_url_links", d.skip_bare_url_links),
        exclude_links=t.convert_list("exclude_links", d.exclude_links, checks.parse_regex),
        max_links_per_part=t.get_positive_int("max_links_per_part", d.max_links_per_part),
        avoid_image_only=t.get_bool("avoid_image_only", d.avoid_image_only),
        ignore_networks=t.convert_list("ignore_networks", d.ignore_networks, checks.parse_network),
        scanner_networks=t.convert_list(
            "scanner_networks", d.scanner_networks, checks.parse_network
        ),
        classify=t.get_bool("classify", d.classify),
        data_dir=t.get_str("data_dir", d.data_dir),
        access_log=t.get_bool("access_log", d.access_log),
        **_http_limits(t, d),
        trusted_proxies=t.convert_list("trusted_proxies", d.trusted_proxies, checks.parse_network),
        workers=t.get_worker_count("workers", d.workers),
        tls_cert=tls_cert,
        tls_key=tls_key,
        policy=tuple(_policy(p) for p in t.tables("policy", _keys(TrackingPolicy))),
        privacy=_privacy(t.table("privacy", _keys(PrivacyConfig))),
    )


def _choice(choices: tuple[str, ...]) -> checks.Parser[str]:
    return lambda value: checks.check_choice(value, choices)


def _policy(t: TomlTable) -> TrackingPolicy:
    match = t.convert("match", "", _optional_pattern)
    user = t.get_str("user", "").strip()
    if bool(match) == bool(user):
        raise ConfigError(f"{t.path}: needs exactly one of match (a sender pattern) or user")
    return TrackingPolicy(
        match=match,
        user=user,
        opens=t.get_bool("opens", True),
        clicks=t.get_bool("clicks", True),
        log_copy=t.get_bool("log_copy", False),
        base_url=t.convert("base_url", "", _optional_http_url),
    )


def _optional_pattern(value: str) -> str:
    return checks.check_address_pattern(value) if value else ""


def _optional_http_url(value: str) -> str:
    return checks.parse_http_url(value) if value else ""


def _privacy(t: TomlTable) -> PrivacyConfig:
    d = PrivacyConfig()
    return PrivacyConfig(
        enabled=t.get_bool("enabled", d.enabled),
        legal_basis=t.convert_list("legal_basis", d.legal_basis, checks.check_address_pattern),
        anonymize_ip=t.get_bool("anonymize_ip", d.anonymize_ip),
        retention=t.convert("retention", d.retention, checks.parse_duration),
    )


def _admin(t: TomlTable) -> AdminConfig:
    d = AdminConfig()
    listen = t.convert_list("listen", d.listen, _host_port)
    token = t.get_str("token", d.token)
    if not token and any(not checks.is_loopback_host(a.host) for a in listen):
        raise t.error("token", "required when admin.listen is not loopback")
    return AdminConfig(
        listen=listen,
        token=token,
        access_log=t.get_bool("access_log", d.access_log),
        **_http_limits(t, d),
    )


def _http_limits(t: TomlTable, d: TrackingConfig | AdminConfig) -> dict[str, Any]:
    """The connection caps and timeouts both HTTP listeners take."""
    return {
        "max_connections": t.get_positive_int("max_connections", d.max_connections),
        "max_connections_per_address": t.get_positive_int(
            "max_connections_per_address", d.max_connections_per_address
        ),
        "header_timeout": t.convert("header_timeout", d.header_timeout, _positive_duration),
        "idle_timeout": t.convert("idle_timeout", d.idle_timeout, _positive_duration),
    }


def _dkim(t: TomlTable) -> DkimConfig:
    return DkimConfig(
        domain=_required(t, "domain", checks.check_hostname),
        selector=_required(t, "selector", checks.check_hostname),
        private_key=_required(t, "private_key", checks.check_readable),
        headers=tuple(h.lower() for h in t.get_str_list("headers", ())),
    )


def _required(t: TomlTable, name: str, parse: checks.Parser[str]) -> str:
    if not t.has(name):
        raise t.error(name, "required")
    return t.convert(name, "", parse)


def _webhook(t: TomlTable) -> WebhookConfig:
    d_events = WebhookConfig("", "").events
    events = t.convert_list("events", d_events, _choice(checks.WEBHOOK_EVENTS))
    if not events:
        raise t.error("events", "needs at least one of " + ", ".join(checks.WEBHOOK_EVENTS))
    return WebhookConfig(
        url=_required(t, "url", checks.parse_webhook_url),
        secret=_required_str(t, "secret"),
        events=events,
    )


def render_config(config: Config, *, redact: bool = True) -> str:
    """The effective config as TOML that load_config reads back; secrets "<redacted>"."""
    return write_toml(config, redact=redact, scalars=(HostPort,))
