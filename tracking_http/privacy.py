"""Personal data kept as little as the purpose allows (SPEC section 3)."""

from __future__ import annotations

import ipaddress

from tracking_http.networks import parse_address

IPV4_KEEP = 24  # the network of a home or office line, not the host
IPV6_KEEP = 48  # a site's allocation; /64 would still single out one household


def anonymize_ip(ip: str) -> str:
    """The network, not the host: IPv4 -> its /24 (``a.b.c.0``), IPv6 -> its /48.

    An IPv4-mapped IPv6 address is the IPv4 client it carries. Text that is
    not an address gives "" rather than being stored as it came.
    """
    address = parse_address(ip)
    if address is None:
        return ""
    keep = IPV4_KEEP if address.version == 4 else IPV6_KEEP
    return str(ipaddress.ip_network(f"{address}/{keep}", strict=False).network_address)
