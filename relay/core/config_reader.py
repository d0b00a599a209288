"""Typed access to one TOML table, with errors that name the full dotted key.

relay.core.config builds its dataclasses through this, so an unknown key, a
wrong type and a bad value all read "smtp.max_recipients: ..." on one line.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


class ConfigError(Exception):
    """A config problem, with a message that names the key or file."""


def toml_type_name(value: object) -> str:
    for kind, name in _TOML_TYPES:
        if isinstance(value, kind):
            return name
    return "date/time"


def a_type(label: str) -> str:
    """ "a boolean", "an integer": the messages read as plain English."""
    return f"an {label}" if label[0] in "aeiou" else f"a {label}"


def read_toml_file(path: Path) -> dict[str, object]:
    """Parse a file; a missing, unreadable or malformed one names the file (and line)."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None


class TomlTable:
    """One table of the config file; refuses keys it does not know up front."""

    def __init__(self, data: Mapping[str, object], path: str, keys: Iterable[str]) -> None:
        self.data = data
        self.path = path
        known = set(keys)
        for key in data:
            if key not in known:
                raise ConfigError(f"{self.key(key)}: unknown key")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def _typed(self, name: str, kind: type[T], label: str, value: object) -> T:
        if toml_type_name(value) != label:
            raise self.error(name, f"expected {a_type(label)}, got {toml_type_name(value)}")
        assert isinstance(value, kind)
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        if name not in self.data:
            return default
        return self._typed(name, bool, "boolean", self.data[name])

    def get_str(self, name: str, default: str) -> str:
        if name not in self.data:
            return default
        return self._typed(name, str, "string", self.data[name])

    def get_positive_int(self, name: str, default: int) -> int:
        if name not in self.data:
            return default
        value = self._typed(name, int, "integer", self.data[name])
        if value <= 0:
            raise self.error(name, f"must be a positive integer, got {value}")
        return value

    def get_str_list(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """An array of strings; a lone string is accepted where one value is the usual case."""
        if name not in self.data:
            return default
        value = self.data[name]
        items = [value] if isinstance(value, str) else self._typed(name, list, "array", value)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                kind = toml_type_name(item)
                raise self.error(name, f"item {index + 1}: expected a string, got {kind}")
        return tuple(items)

    def convert(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        """A string value run through a parser from relay.core.config_checks."""
        if name not in self.data:
            return default
        return self._parse(name, parse, self.get_str(name, ""))

    def convert_list(
        self, name: str, default: tuple[T, ...], parse: Callable[[str], T]
    ) -> tuple[T, ...]:
        if name not in self.data:
            return default
        return tuple(self._parse(name, parse, item) for item in self.get_str_list(name, ()))

    def _parse(self, name: str, parse: Callable[[str], T], text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def table(self, name: str, keys: Iterable[str]) -> TomlTable:
        value = self.data.get(name, {})
        return TomlTable(self._typed(name, dict, "table", value), self.key(name), keys)

    def tables(self, name: str, keys: Iterable[str]) -> list[TomlTable]:
        """An array of tables ([[smtp.users]]), each item named by its 1-based position."""
        if name not in self.data:
            return []
        items = self._typed(name, list, "array", self.data[name])
        tables = []
        for index, item in enumerate(items):
            path = f"{self.key(name)}[{index + 1}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{path}: expected a table, got {toml_type_name(item)}")
            tables.append(TomlTable(item, path, keys))
        return tables
