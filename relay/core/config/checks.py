"""Parsers for the value types of the config file: durations, addresses, networks, URLs.

Each takes the raw TOML value and either returns the parsed value or raises
ValueError with a message that does not name the key: the loader in
relay.core.config prefixes the dotted key, so every error reads the same way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar
from urllib.parse import urlsplit

from relay.core.config.reader import expects

T = TypeVar("T")
Parser = Callable[[str], T]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
UPSTREAM_SCHEMES = ("smtp", "smtp+starttls", "smtps")
STORE_SCHEMES = ("postgresql", "postgres")
WEBHOOK_EVENTS = ("open", "click", "bounce", "delivered", "deferred", "reply")
PIXEL_POSITIONS = ("auto", "top", "bottom")


DURATION_EXPECTED = 'a duration like "3s"'


@expects(DURATION_EXPECTED)
def parse_duration(value: str) -> float:
    """ "90s", "5m", "1h", "4d", "500ms", "0" -> seconds; a bare number other than 0 is refused
    because "5" could mean seconds or minutes."""
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        raise ValueError(f'bad duration {value!r}; use e.g. "3s", "5m", "1h", "4d" or "0"')
    number, unit = float(match.group(1)), match.group(2)
    if unit is None and number != 0:
        raise ValueError(f'duration {value!r} needs a unit: "s", "m", "h" or "d"')
    return number * DURATION_UNITS[unit or "s"]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling that parse_duration reads back to the same value."""
    if seconds == 0:
        return "0"
    for unit in ("d", "h", "m", "s"):
        size = DURATION_UNITS[unit]
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{Decimal(repr(seconds)):f}s"  # shortest exact digits, never an exponent


def parse_host_port(value: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port", for a listener."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f'bad address {value!r}; use "[::1]:2525" for IPv6')
        _check_ip(host, value, version=6)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f'bad address {value!r}; use "host:port", e.g. "127.0.0.1:2525"')
        if ":" in host:
            raise ValueError(f'bad address {value!r}; write IPv6 as "[::1]:2525"')
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"bad host in {value!r}")
    return host, parse_port(port_text, value)


def parse_port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port in {whole!r}: must be 1-65535")
    return int(text)


def _check_ip(host: str, whole: str, version: int) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad IP address in {whole!r}") from None
    if address.version != version:
        raise ValueError(f"bad IP address in {whole!r}")


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost"; a name or 0.0.0.0 is reachable from outside."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_network(value: str) -> Network:
    """A CIDR ("10.0.0.0/8") or a single address; host bits are masked off."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f'bad network {value!r}; use CIDR like "10.0.0.0/8"') from None


def parse_regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression {value!r}: {exc}") from None


def parse_http_url(value: str) -> str:
    """A base URL: absolute http(s), no query, no trailing slash (links append a path)."""
    text = parse_webhook_url(value)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise ValueError(f"URL {value!r} may not carry a query or fragment")
    return text.rstrip("/")


def parse_webhook_url(value: str) -> str:
    """An absolute http(s) URL, kept exactly as written (a query may carry a token)."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"bad URL {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
    return text


def check_upstream_url(value: str) -> str:
    """maildir:PATH, or smtp:// smtp+starttls:// smtps:// with a host and an optional port."""
    text = value.strip()
    if text.startswith("maildir:"):
        if not text.removeprefix("maildir:").removeprefix("//"):
            raise ValueError("maildir: needs a path, e.g. maildir:./outbox")
        return text
    parts = urlsplit(text)
    if parts.scheme.lower() not in UPSTREAM_SCHEMES:
        raise ValueError(
            f"unknown scheme in {_hide_password(text)!r}; "
            "use maildir:PATH, smtp://, smtp+starttls:// or smtps://"
        )
    if not parts.hostname:
        raise ValueError("no host, e.g. smtp://mail.example.com:25")
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].rpartition(":")
    if port_text[1]:
        parse_port(port_text[2], _hide_password(text))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("only scheme://host:port is allowed")
    return text


@expects('a URL like "postgresql://relay@db.example.com/relay"')
def check_store_url(value: str) -> str:
    """Empty (the SQLite file at store.path), or a PostgreSQL URL as libpq reads it:
    postgresql://[user[:password]@][host][:port][/dbname][?param=value...]."""
    text = value.strip()
    if not text:
        return ""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"bad URL {_hide_password(text)!r}") from None
    if parts.scheme.lower() not in STORE_SCHEMES:
        raise ValueError(
            f"unknown scheme in {_hide_password(text)!r}; use postgresql://user@host/dbname"
            " (or leave it empty for the SQLite file at store.path)"
        )
    return text


def _hide_password(url: str) -> str:
    return redact_url(url, "***")


def redact_url(url: str, mask: str) -> str:
    """Replace a password in the URL's userinfo, so errors and check-config never show it."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:{mask}@{hostpart}"


def check_address_pattern(value: str) -> str:
    """A sender/recipient pattern: "alice@example.com", "*@example.com", "*@*.example.com"."""
    text = value.strip()
    if "@" not in text or any(c.isspace() for c in text):
        raise ValueError(f'bad address pattern {value!r}; use e.g. "*@example.com"')
    return text


def check_choice(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
    return value


def check_readable(path: str) -> str:
    """Fail at load, naming the file, rather than at the first TLS handshake or signature."""
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def check_hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError(f"bad host name {value!r}")
    return value
