"""Personal data kept as little as the purpose allows (SPEC section 3)."""

from __future__ import annotations

import ipaddress

from tracking_http.networks import IPAddress, parse_address

IPV4_KEEP = 24  # the network of a home or office line, not the host
IPV6_KEEP = 48  # a site's allocation; /64 would still single out one household
V4_MASK = ((1 << IPV4_KEEP) - 1) << (32 - IPV4_KEEP)
V6_MASK = ((1 << IPV6_KEEP) - 1) << (128 - IPV6_KEEP)


def anonymize_ip(ip: str) -> str:
    """The network, not the host: IPv4 -> its /24 (``a.b.c.0``), IPv6 -> its /48.

    An IPv4-mapped IPv6 address is the IPv4 client it carries. Text that is
    not an address gives "" rather than being stored as it came.
    """
    address = parse_address(ip)
    if address is None:
        return ""
    if address.version == 4 and ip.count(".") == 3 and ":" not in ip:
        return ip.strip().rpartition(".")[0] + ".0"  # the text is the address: no formatting
    return network_of(address)


def network_of(address: IPAddress) -> str:
    """anonymize_ip for an address already parsed."""
    if address.version == 4:
        return str(ipaddress.IPv4Address(int(address) & V4_MASK))
    return str(ipaddress.IPv6Address(int(address) & V6_MASK))
