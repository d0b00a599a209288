"""Client address selection: only trusted proxies may name the client."""

from __future__ import annotations

import ipaddress

from multidict import CIMultiDict, CIMultiDictProxy

from tracking_http.client_ip import client_address, forwarded_hops, parse_ip
from tracking_http.privacy import anonymize_ip

PROXY = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_untrusted_peer_ignores_spoofed_headers() -> None:
    hops = forwarded_hops(headers(("X-Forwarded-For", "203.0.113.5")))
    assert client_address("198.51.100.9", hops, PROXY) == "198.51.100.9"
    assert client_address("127.0.0.1", hops, ()) == "127.0.0.1"


def test_right_most_untrusted_hop_wins() -> None:
    hops = forwarded_hops(headers(("X-Forwarded-For", "1.2.3.4, 203.0.113.5, 10.1.1.1")))
    assert client_address("127.0.0.1", hops, PROXY) == "203.0.113.5"


def test_repeated_headers_are_one_list() -> None:
    h = headers(("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "203.0.113.5"))
    assert client_address("127.0.0.1", forwarded_hops(h), PROXY) == "203.0.113.5"


def test_forwarded_header_for_param() -> None:
    h = headers(("Forwarded", 'for=192.0.2.60;proto=http, For="[2001:db8:cafe::17]:4711"'))
    assert client_address("127.0.0.1", forwarded_hops(h), PROXY) == "2001:db8:cafe::17"


def test_garbage_stops_at_last_trusted_hop() -> None:
    hops = forwarded_hops(headers(("X-Forwarded-For", "203.0.113.5, not-an-ip, 10.0.0.2")))
    assert client_address("127.0.0.1", hops, PROXY) == "10.0.0.2"
    hops = forwarded_hops(headers(("Forwarded", "for=unknown")))
    assert client_address("127.0.0.1", hops, PROXY) == "127.0.0.1"


def test_all_trusted_gives_left_most() -> None:
    hops = forwarded_hops(headers(("X-Forwarded-For", "10.0.0.7, 10.0.0.2")))
    assert client_address("127.0.0.1", hops, PROXY) == "10.0.0.7"


def test_parse_ip_forms() -> None:
    assert str(parse_ip("192.0.2.1:8080")) == "192.0.2.1"
    assert str(parse_ip("[::1]:80")) == "::1"
    assert str(parse_ip("::ffff:192.0.2.1")) == "192.0.2.1"
    assert parse_ip("") is None
    assert parse_ip("_hidden") is None


def test_anonymize_ip() -> None:
    assert anonymize_ip("198.51.100.77") == "198.51.100.0"
    assert anonymize_ip("2001:db8:1234:5678::1") == "2001:db8:1234::"
    assert anonymize_ip("garbage") == ""


def test_parsed_addresses_are_remembered_but_long_text_is_not() -> None:
    assert parse_ip("198.51.100.9") is parse_ip("198.51.100.9")  # parsed once
    long_hop = " " * 100 + "203.0.113.5"
    assert parse_ip(long_hop) == ipaddress.ip_address("203.0.113.5")
    assert client_address("::ffff:198.51.100.9", [], ()) == "198.51.100.9"
