"""The config's shape: frozen dataclasses with every default.

relay.core.config parses and checks the TOML into these and re-exports them;
import them from there.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SmtpUser:
    name: str
    password_hash: str
    allowed_senders: tuple[str, ...] = ()


@dataclass(frozen=True)
class SmtpConfig:
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 2525),)
    implicit_tls_listen: tuple[HostPort, ...] = ()
    hostname: str = "localhost"
    tls_cert: str = ""
    tls_key: str = ""
    require_tls_for_auth: bool = True
    # AUTH failures allowed per window from one address (IPv4, IPv6 /64) and for one
    # user name; past either, 454 4.7.0 without a password check until the window ends.
    auth_failures_per_address: int = 5
    auth_failures_per_user: int = 10
    auth_failure_window: float = 300.0
    auth_reply_delay: float = 1.0  # every AUTH answer, success or failure, waits this long
    allowed_networks: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    max_message_size: int = 52_428_800
    max_recipients: int = 500
    # Back-pressure: with more copies than this waiting in the queue, new mail gets 452.
    max_queued_copies: int = 100_000
    # Flow control: while arrivals outrun deliveries, the reply to DATA waits up to this
    # long (seconds; 0: never), so senders slow down before 452 (smtp/backpressure.py).
    flow_delay: float = 1.0
    users: tuple[SmtpUser, ...] = ()
    # Option (SPEC 4): keep X-Mailgun-*/X-PM-*/X-MC-* headers for a tracking upstream.
    pass_through_tracking_headers: bool = False
    # Open sessions over all listeners, and from one address, beyond which 421 4.7.0.
    max_sessions: int = 200
    max_sessions_per_address: int = 20
    command_timeout: float = 300.0  # idle wait for the next command or DATA line (RFC 5321)
    session_timeout: float = 1800.0  # a whole session, however busy
    # Processes accepting on the listeners (SO_REUSEPORT): this one and workers - 1 more.
    workers: int = 1


@dataclass(frozen=True)
class UpstreamConfig:
    url: str = "maildir:./outbox"
    username: str = ""
    password: str = ""
    max_connections: int = 10
    # seconds between attempts; the last one repeats until max_queue_age
    retry_schedule: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
    max_queue_age: float = 4 * 86400
    timeout: float = 60.0
    tls_verify: bool = True  # whenever TLS is used: smtps, required and offered STARTTLS
    # smtp:// only: STARTTLS when offered, encrypted but not verified (Postfix's "may").
    opportunistic_tls: bool = False
    ca_file: str = ""
    # Rewrite and deliver in a process of its own (delivery/child.py), off the SMTP loop.
    delivery_process: bool = True
    # Delivery processes started by the smtp and serve roles (delivery_process = true);
    # they share the queue by leases, as do `relay deliver` processes on other hosts.
    delivery_workers: int = 1
    # How long a copy taken by a worker stays its own without a renewal (every third of
    # it): how soon a dead worker's copies go to another one (store/sql/leases.py).
    lease_time: float = 60.0


@dataclass(frozen=True)
class TrackingPolicy:
    match: str = ""  # sender address pattern ("*@sales.example.com"); "" when user is used
    user: str = ""  # authenticated SMTP user name
    opens: bool = True
    clicks: bool = True
    log_copy: bool = False
    base_url: str = ""


@dataclass(frozen=True)
class PrivacyConfig:
    enabled: bool = False
    legal_basis: tuple[str, ...] = ()
    anonymize_ip: bool = False
    retention: float = 0  # seconds; 0 = keep


@dataclass(frozen=True)
class TrackingConfig:
    base_url: str = "http://127.0.0.1:8080"
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 8080),)
    secrets: tuple[str, ...] = ()
    opens: bool = True
    clicks: bool = True
    per_recipient: bool = True
    pixel_position: str = "auto"  # "auto" | "top" | "bottom"
    honeypot: bool = False
    bot_click_window: float = 3.0
    bot_open_window: float = 2.0  # a browser's pixel fetch this soon after delivery: a sandbox
    skip_bare_url_links: bool = True
    exclude_links: tuple[re.Pattern[str], ...] = ()
    max_links_per_part: int = 1000  # links tracked per HTML part; later ones are left alone
    # No pixel where it would be the only image in a short HTML part (filters would
    # read the mail as image-only); the copy's rewrite_note says so. false: always a pixel.
    avoid_image_only: bool = True
    ignore_networks: tuple[Network, ...] = ()
    scanner_networks: tuple[Network, ...] = ()  # requests from these are bots (mail scanners)
    classify: bool = True  # false: every event is recorded "human" (benchmark baseline)
    data_dir: str = "./relay-data"  # refreshed network data (relay update-data); else shipped
    access_log: bool = False  # one line per pixel and click request is a lot of log
    # Connections of the tracking listener in all and from one address (beyond: 503), a
    # request's header block, and an idle keep-alive connection.
    max_connections: int = 4096
    max_connections_per_address: int = 256
    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    # HTTPS on the tracking listener itself (else a reverse proxy terminates TLS).
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: tuple[Network, ...] = ()
    # Processes answering on the tracking listener (SO_REUSEPORT): the admin one and
    # workers - 1 more.
    workers: int = 1
    policy: tuple[TrackingPolicy, ...] = ()
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)


@dataclass(frozen=True)
class AdminConfig:
    listen: tuple[HostPort, ...] = (HostPort("127.0.0.1", 8081),)
    token: str = ""
    access_log: bool = True
    max_connections: int = 256
    max_connections_per_address: int = 64
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


@dataclass(frozen=True)
class StoreConfig:
    path: str = "./relay.db"  # SQLite, the embedded default
    url: str = ""  # postgresql://user@host:port/db: PostgreSQL instead (wins over path)


@dataclass(frozen=True)
class DkimConfig:
    domain: str
    selector: str
    private_key: str
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookConfig:
    url: str
    secret: str
    events: tuple[str, ...] = ("open", "click", "bounce", "delivered")


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"  # debug, info, warning, error (--log-level overrides)
    format: str = "text"  # "text" or "json" (one object per line)


@dataclass(frozen=True)
class Config:
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    dkim: DkimConfig | None = None
    webhooks: tuple[WebhookConfig, ...] = ()
    log: LogConfig = field(default_factory=LogConfig)
    source: str = "<embedded defaults>"  # the file it was read from
