"""The effective config as TOML text, for `relay check-config`.

A small writer for this known schema (no TOML-writing dependency): every
float in the config is a duration, every tuple an array, a dataclass a table,
a tuple of dataclasses an array of tables. The text loads back into an equal
Config; secrets are replaced by "<redacted>" unless the caller asks otherwise.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import fields, is_dataclass
from typing import Any

from relay.core.config.checks import format_duration, redact_url

REDACTED = "<redacted>"
# dotted field paths (array indices left out) whose non-empty values are secrets
SECRET_KEYS = frozenset(
    {
        "smtp.users.password_hash",
        "upstream.password",
        "tracking.secrets",
        "admin.token",
        "webhooks.secret",
    }
)
# fields whose annotation says seconds; written as "5m", "4d" (annotations are strings here)
_DURATION_TYPES = frozenset({"float", "tuple[float, ...]"})
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def write_toml(config: Any, *, redact: bool, scalars: tuple[type, ...]) -> str:
    """TOML text for a Config; ``scalars``: dataclasses written as their str() (HostPort)."""
    lines = [f"# effective config from {getattr(config, 'source', '?')}"]
    if redact:
        lines[0] += "; secrets redacted"
    _Writer(redact, scalars).table(config, "", lines)
    return "\n".join(lines) + "\n"


class _Writer:
    def __init__(self, redact: bool, scalars: tuple[type, ...]) -> None:
        self.redact = redact
        self.scalars = scalars

    def is_table(self, value: object) -> bool:
        return is_dataclass(value) and not isinstance(value, (type, *self.scalars))

    def is_table_array(self, value: object) -> bool:
        return isinstance(value, tuple) and bool(value) and all(map(self.is_table, value))

    def table(self, table: Any, path: str, lines: list[str]) -> None:
        """Scalars first, then sub-tables, then arrays of tables: TOML reads keys into the
        most recent header, so this order keeps every key in its own table."""
        items = [(f.name, getattr(table, f.name)) for f in fields(table) if f.name != "source"]
        durations = {f.name for f in fields(table) if f.type in _DURATION_TYPES}
        for name, value in items:
            if value is None or self.is_table(value) or self.is_table_array(value):
                continue
            if self.redact:
                value = _redacted(f"{path}.{name}" if path else name, value)
            text = _duration(value) if name in durations else self.value(value)
            lines.append(f"{name} = {text}")
        for name, value in items:
            key = f"{path}.{name}" if path else name
            if self.is_table(value):
                lines.extend(["", f"[{key}]"])
                self.table(value, key, lines)
            elif self.is_table_array(value):
                for item in value:
                    lines.extend(["", f"[[{key}]]"])
                    self.table(item, key, lines)

    def value(self, value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, tuple):
            return "[" + ", ".join(self.value(v) for v in value) + "]"
        if isinstance(value, re.Pattern):
            return _quote(value.pattern)
        if isinstance(value, (str, ipaddress.IPv4Network, ipaddress.IPv6Network, *self.scalars)):
            return _quote(str(value))
        raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _duration(value: object) -> str:
    """Durations are floats in the dataclasses (an int default is fine there)."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_duration(v) for v in value) + "]"
    assert isinstance(value, int | float)
    return _quote(format_duration(float(value)))


def _redacted(key: str, value: object) -> object:
    if key in SECRET_KEYS:
        if isinstance(value, tuple):
            return tuple(REDACTED if v else v for v in value)
        return REDACTED if value else value
    if key in ("upstream.url", "store.url") and isinstance(value, str):
        return redact_url(value, REDACTED)
    return value


def _quote(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
