"""Fast membership of an address in many labelled networks, and the network data files.

Apple's published egress list has tens of thousands of networks, and the
check runs on every pixel request: a linear scan would cost more than the
request. Networks become disjoint intervals sorted by their first address,
so a lookup is one binary search (O(log n)) whatever the number of networks,
and each interval keeps the label of who publishes it (``apple``,
``microsoft``, ``google``...), which becomes the reason code.
"""

from __future__ import annotations

import bisect
import ipaddress
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network  # the same alias as relay.core.config
Labelled = tuple[str, Network]
MAX_LABEL_CHARS = 40


def parse_address(text: str) -> IPAddress | None:
    """An address, IPv4-mapped IPv6 unwrapped to its IPv4; None if it is not one.

    The C parser first (inet_pton: a third of ipaddress's cost, and every new client of
    the tracking server pays it); ipaddress for what it alone reads (a scoped IPv6).
    """
    text = text.strip()
    try:
        return ipaddress.IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):
        pass
    try:
        address: IPAddress = ipaddress.IPv6Address(socket.inet_pton(socket.AF_INET6, text))
    except (OSError, ValueError):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class _Intervals:
    """Disjoint [first, last] integer intervals with a label each, for one IP version."""

    def __init__(self, spans: Iterable[tuple[int, int, str]]) -> None:
        firsts: list[int] = []
        lasts: list[int] = []
        labels: list[str] = []
        # Longest first among equal starts, so a network nested in another adds nothing.
        for first, last, label in sorted(spans, key=lambda s: (s[0], -s[1])):
            if lasts and first <= lasts[-1] + 1:
                if label == labels[-1]:  # overlapping or adjacent, same publisher: one span
                    lasts[-1] = max(lasts[-1], last)
                    continue
                if last <= lasts[-1]:  # inside another publisher's span: the first one wins
                    continue
                first = max(first, lasts[-1] + 1)
            firsts.append(first)
            lasts.append(last)
            labels.append(label)
        self._firsts = firsts
        self._lasts = lasts
        self._labels = labels

    def find(self, value: int) -> str | None:
        index = bisect.bisect_right(self._firsts, value) - 1
        if index >= 0 and value <= self._lasts[index]:
            return self._labels[index]
        return None

    def __len__(self) -> int:
        return len(self._firsts)


class NetworkTable:
    """An immutable map from networks to labels answering ``table.label_of(address)``."""

    def __init__(self, networks: Iterable[Labelled | Network]) -> None:
        spans: dict[int, list[tuple[int, int, str]]] = {4: [], 6: []}
        for item in networks:
            label, network = item if isinstance(item, tuple) else ("", item)
            first = int(network.network_address)
            spans[network.version].append((first, first + network.num_addresses - 1, label))
        self._tables = {version: _Intervals(items) for version, items in spans.items()}

    def label_of(self, address: object) -> str | None:
        """The publisher's label of the network holding the address, None if none does."""
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return None
        return self._tables[address.version].find(int(address))

    def find(self, version: int, value: int) -> str | None:
        """label_of for an address already taken apart (one conversion for many tables)."""
        return self._tables[version].find(value)

    def __contains__(self, address: object) -> bool:
        return self.label_of(address) is not None

    def __len__(self) -> int:
        """Disjoint intervals held (after merging), not the networks handed in."""
        return sum(len(table) for table in self._tables.values())

    def __bool__(self) -> bool:
        return len(self) > 0


def parse_network_line(line: str, default_label: str = "") -> Labelled | None:
    """``label CIDR``, ``CIDR`` or Apple's CSV (``CIDR,country,region,city,``); None for a
    blank or ``#`` line. Raises ValueError naming what is wrong."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split(",", 1)[0].split()
    if len(fields) == 1:
        label, cidr = default_label, fields[0]
    elif len(fields) == 2:
        label, cidr = fields
    else:
        raise ValueError(f"expected 'label CIDR', got {text[:80]!r}")
    if len(label) > MAX_LABEL_CHARS or not all(c.isalnum() or c in "-_." for c in label):
        raise ValueError(f"bad label {label[:80]!r}")
    try:
        return label, ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise ValueError(f"not a network: {cidr[:80]!r} ({exc})") from None


def read_labelled_networks(path: Path, default_label: str = "") -> list[Labelled]:
    """Every network of a data file, with its label; ValueError naming the line if one is bad."""
    networks: list[Labelled] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            item = parse_network_line(raw, default_label)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: {exc}") from None
        if item is not None:
            networks.append(item)
    return networks


@dataclass(frozen=True)
class FileStamp:
    """What tells a data file changed without reading it."""

    path: str
    mtime_ns: int
    size: int


def stamp(path: Path) -> FileStamp | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return FileStamp(str(path), info.st_mtime_ns, info.st_size)


_TABLES: dict[FileStamp, NetworkTable] = {}


def load_table(path: Path, default_label: str = "") -> NetworkTable:
    """The table of one data file, parsed once per version of the file (Apple's list takes
    a good part of a second to parse, and every app of a test run would parse it again)."""
    key = stamp(path)
    if key is None:
        raise FileNotFoundError(f"{path}: no such network data file")
    table = _TABLES.get(key)
    if table is None:
        table = NetworkTable(read_labelled_networks(path, default_label))
        for old in [k for k in _TABLES if k.path == key.path]:
            del _TABLES[old]
        _TABLES[key] = table
    return table
