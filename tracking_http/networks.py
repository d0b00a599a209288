"""Fast membership of an address in many networks, and the network data files.

Apple's published egress list has tens of thousands of networks, and the
check runs on every pixel request: a linear scan would cost more than the
request. Networks are bucketed by prefix length, so a lookup is one set
probe per distinct prefix length, whatever the number of networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network  # the same alias as relay.core.config


def parse_address(text: str) -> IPAddress | None:
    """An address, IPv4-mapped IPv6 unwrapped to its IPv4; None if it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class NetworkSet:
    """An immutable set of networks answering ``address in networks`` quickly."""

    def __init__(self, networks: Iterable[Network]) -> None:
        buckets: dict[tuple[int, int], set[int]] = {}
        for network in networks:
            key = (network.version, network.prefixlen)
            shift = network.max_prefixlen - network.prefixlen
            buckets.setdefault(key, set()).add(int(network.network_address) >> shift)
        self._buckets = {key: frozenset(prefixes) for key, prefixes in buckets.items()}
        self._lengths = {
            version: tuple(sorted(length for v, length in self._buckets if v == version))
            for version in (4, 6)
        }

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        value = int(address)
        bits = address.max_prefixlen
        version = address.version
        return any(
            value >> (bits - length) in self._buckets[(version, length)]
            for length in self._lengths[version]
        )

    def __bool__(self) -> bool:
        return bool(self._buckets)


def load_networks(path: Path) -> list[Network]:
    """One CIDR per line (first comma-separated field, so Apple's CSV works); ``#`` comments."""
    networks: list[Network] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        field = line.split(",", 1)[0].strip()
        try:
            networks.append(ipaddress.ip_network(field))
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not a network: {field!r} ({exc})") from None
    return networks
