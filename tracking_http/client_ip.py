"""The client address of a tracking request (SPEC section 6).

Only a peer in ``tracking.trusted_proxies`` may name the client with
``X-Forwarded-For`` or ``Forwarded``; anyone else could spoof it. The
right-most address that is not itself a trusted proxy is the client: every
hop to its right was added by a proxy we trust, everything to its left was
written by the client and proves nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from multidict import CIMultiDictProxy

from relay.core.config import Network
from tracking_http.networks import parse_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_HOPS = 32  # a longer proxy chain is either a loop or an attack; look no further
PARSED_CACHE = 4096  # addresses parsed once per process, not once per request
MAX_CACHED_CHARS = 64  # longer text is no address anyway: never kept


def parse_ip(value: str) -> IPAddress | None:
    """An address from a header hop: bare, ``[v6]:port``, ``v4:port`` or quoted; else None.

    The same few addresses come back request after request, and ipaddress
    parses in pure Python: short text is parsed once (bounded cache).
    """
    if len(value) <= MAX_CACHED_CHARS:
        return _parse_cached(value)
    return _parse_ip(value)


def _parse_ip(value: str) -> IPAddress | None:
    text = value.strip().strip('"').strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        text = text.partition(":")[0]
    return parse_address(text)


_parse_cached = functools.lru_cache(maxsize=PARSED_CACHE)(_parse_ip)


@functools.lru_cache(maxsize=PARSED_CACHE)
def address_text(address: IPAddress) -> str:
    """``str(address)``, which ipaddress recomputes every time."""
    return str(address)


def normalize(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 peer (``::ffff:192.0.2.1``) is the IPv4 client it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress, networks: Iterable[Network]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def forwarded_hops(headers: CIMultiDictProxy[str]) -> list[str]:
    """Hops, left to right, from X-Forwarded-For, else from the ``for=`` of Forwarded."""
    xff = headers.getall("X-Forwarded-For", [])
    if xff:
        return [hop for value in xff for hop in value.split(",")]
    hops: list[str] = []
    for value in headers.getall("Forwarded", []):
        for element in value.split(","):
            found = ""  # an element without for= is a hop we cannot read
            for pair in element.split(";"):
                name, _, param = pair.partition("=")
                if name.strip().lower() == "for":
                    found = param
            hops.append(found)
    return hops


def client_address(
    peer: str | None, hops: Sequence[str], trusted_proxies: Sequence[Network]
) -> str:
    """The client address: the peer, or the right-most untrusted hop when the peer is trusted.

    A hop that cannot be parsed ends the walk: the nearest address a trusted
    proxy vouched for is then the best we know.
    """
    current = parse_ip(peer or "")
    if current is None:
        return peer or ""
    if not trusted_proxies:
        return address_text(current)
    for hop in list(reversed(hops))[:MAX_HOPS]:
        if not in_networks(current, trusted_proxies):
            break
        address = parse_ip(hop)
        if address is None:
            break
        current = address
    return address_text(current)
