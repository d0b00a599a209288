"""Typed access to one TOML table, with errors that name the full dotted key.

relay.core.config builds its dataclasses through this, so an unknown key, a
wrong type and a bad value all read "smtp.max_recipients: ..." on one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),  # before int: bool is a subclass of int
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


MAX_WORKERS = 256  # processes of one role (tracking, smtp, delivery workers)


class ConfigError(Exception):
    """A config problem, with a message that names the key or file."""


def expects(description: str) -> Callable[[F], F]:
    """Mark a value parser with what its string looks like ('a duration like "3s"'), so a
    value of the wrong TOML type is refused with that instead of "expected a string"."""

    def mark(parse: F) -> F:
        parse.expects = description  # type: ignore[attr-defined]
        return parse

    return mark


def _expected(parse: Callable[[str], object]) -> str:
    return str(getattr(parse, "expects", "a string"))


def closest_key(name: str, path: str, local: Iterable[str], everywhere: Sequence[str]) -> str:
    """The known key an unknown one was most likely meant to be, dotted, or "".

    A near spelling in the same table first ("retension" -> "retention"); then the same
    name in another table ("tracking.retention" -> "tracking.privacy.retention"); then
    the nearest dotted key of the whole config."""
    prefix = f"{path}." if path else ""
    near = difflib.get_close_matches(name, list(local), n=1)
    if near:
        return prefix + near[0]
    dotted = re.sub(r"\[\d+\]", "", prefix + name)  # smtp.users[1].x -> smtp.users.x
    same_name = [key for key in everywhere if key.rpartition(".")[2] == name]
    if same_name:
        return max(same_name, key=lambda key: difflib.SequenceMatcher(None, dotted, key).ratio())
    near = difflib.get_close_matches(dotted, everywhere, n=1, cutoff=0.8)
    return near[0] if near else ""


def dotted_keys(schema: type, prefix: str = "", skip: Iterable[str] = ()) -> list[str]:
    """Every key of a config dataclass tree, dotted ("tracking.privacy.retention"), its
    tables too. Arrays of tables ([[smtp.users]]) are left out: items go by position."""
    keys: list[str] = []
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        if field.name in skip:
            continue
        keys.append(prefix + field.name)
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):  # dkim: DkimConfig | None
            kind = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        if dataclasses.is_dataclass(kind):
            keys += dotted_keys(typing.cast(type, kind), f"{prefix}{field.name}.")
    return keys


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
    """One table of the config file; refuses keys it does not know up front.

    everywhere: every dotted key of the config (tables it opens inherit it), so an
    unknown key can be answered with the closest known one.
    """

    def __init__(
        self,
        data: Mapping[str, object],
        path: str,
        keys: Iterable[str],
        everywhere: Sequence[str] = (),
    ) -> None:
        self.data = data
        self.path = path
        self.everywhere = everywhere
        known = list(keys)
        for key in data:
            if key not in known:
                raise ConfigError(self._unknown(key, known))

    def _unknown(self, key: str, known: list[str]) -> str:
        guess = closest_key(key, self.path, known, self.everywhere)
        hint = f"; did you mean `{guess}`?" if guess else ""
        return f"{self.key(key)}: unknown key{hint}"

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        return name in self.data

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def _typed(self, name: str, kind: type[T], label: str, value: object, expected: str = "") -> T:
        if toml_type_name(value) != label:
            got = toml_type_name(value)
            if expected and got in ("integer", "float"):
                got = f"{got} {value}"  # 'expected a duration like "3s", got integer 3'
            raise self.error(name, f"expected {expected or a_type(label)}, got {got}")
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

    def get_worker_count(self, name: str, default: int) -> int:
        """A number of processes of one role: 1 to MAX_WORKERS."""
        value = self.get_positive_int(name, default)
        if value > MAX_WORKERS:
            raise self.error(name, f"must be at most {MAX_WORKERS}, got {value}")
        return value

    def get_str_list(
        self, name: str, default: tuple[str, ...], expected: str = "a string"
    ) -> tuple[str, ...]:
        """An array of strings; a lone string is accepted where one value is the usual case."""
        if name not in self.data:
            return default
        value = self.data[name]
        items = [value] if isinstance(value, str) else self._typed(name, list, "array", value)
        for index, item in enumerate(items):
            if not isinstance(item, str):
                kind = toml_type_name(item)
                if expected != "a string" and kind in ("integer", "float"):
                    kind = f"{kind} {item}"
                raise self.error(name, f"item {index + 1}: expected {expected}, got {kind}")
        return tuple(items)

    def convert(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        """A string value run through a parser from relay.core.config.checks."""
        if name not in self.data:
            return default
        text = self._typed(name, str, "string", self.data[name], _expected(parse))
        return self._parse(name, parse, text)

    def convert_list(
        self, name: str, default: tuple[T, ...], parse: Callable[[str], T]
    ) -> tuple[T, ...]:
        if name not in self.data:
            return default
        items = self.get_str_list(name, (), _expected(parse))
        return tuple(self._parse(name, parse, item) for item in items)

    def _parse(self, name: str, parse: Callable[[str], T], text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def table(self, name: str, keys: Iterable[str]) -> TomlTable:
        value = self.data.get(name, {})
        data = self._typed(name, dict, "table", value)
        return TomlTable(data, self.key(name), keys, self.everywhere)

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
            tables.append(TomlTable(item, path, keys, self.everywhere))
        return tables
