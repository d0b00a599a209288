"""The network tables and the shipped snapshots: right answers, whatever the overlaps."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracking_http.classify import (
    APPLE_RELAY_FILE,
    CRAWLER_FILE,
    DATA_DIR,
    NETWORK_FILES,
    SCANNER_FILE,
    NetworkData,
)
from tracking_http.networks import (
    Network,
    NetworkTable,
    parse_address,
    parse_network_line,
    read_labelled_networks,
)

LABELS = ("a", "b", "c")


@st.composite
def v4_networks(draw: st.DrawFn) -> tuple[str, Network]:
    prefix = draw(st.integers(min_value=8, max_value=32))
    value = draw(st.integers(min_value=0, max_value=2**32 - 1))
    network = ipaddress.ip_network(f"{ipaddress.IPv4Address(value)}/{prefix}", strict=False)
    return draw(st.sampled_from(LABELS)), network


@settings(max_examples=300, deadline=None)
@given(
    st.lists(v4_networks(), max_size=30),
    st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=30),
)
def test_table_answers_like_a_scan_of_the_networks(
    networks: list[tuple[str, Network]], probes: list[int]
) -> None:
    """Membership is exact; the label is the one of some network holding the address."""
    table = NetworkTable(networks)
    # Probe the edges of every network too: off-by-one errors live there.
    values = list(probes)
    for _label, network in networks:
        first = int(network.network_address)
        values += [
            first,
            first - 1,
            first + network.num_addresses - 1,
            first + network.num_addresses,
        ]
    for value in values:
        if not 0 <= value < 2**32:
            continue
        address = ipaddress.IPv4Address(value)
        holders = {label for label, network in networks if address in network}
        found = table.label_of(address)
        assert (found is not None) == bool(holders)
        assert found is None or found in holders


def test_labels_v6_and_nested_networks() -> None:
    table = NetworkTable(
        [
            ("apple", ipaddress.ip_network("2a02:26f7::/32")),
            ("acme", ipaddress.ip_network("10.0.0.0/8")),
            ("inner", ipaddress.ip_network("10.1.0.0/16")),  # inside acme: acme answers
            ("acme", ipaddress.ip_network("11.0.0.0/8")),  # adjacent, same label: one span
        ]
    )
    assert table.label_of(parse_address("2a02:26f7:b003:4000::1")) == "apple"
    assert table.label_of(parse_address("10.1.2.3")) == "acme"
    assert table.label_of(parse_address("11.255.255.255")) == "acme"
    assert table.label_of(parse_address("12.0.0.0")) is None
    assert table.label_of(parse_address("::ffff:10.0.0.1")) == "acme"
    assert len(table) == 2
    assert table.label_of(None) is None


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("apple 172.224.226.0/27", ("apple", "172.224.226.0/27")),
        ("172.224.226.0/27,GB,GB-EN,London,", ("", "172.224.226.0/27")),
        ("  # a comment", None),
        ("", None),
    ],
)
def test_data_lines(line: str, expected: tuple[str, str] | None) -> None:
    item = parse_network_line(line)
    assert (None if item is None else (item[0], str(item[1]))) == expected


def shipped(name: str) -> list[tuple[str, Network]]:
    return read_labelled_networks(DATA_DIR / name)


def test_shipped_apple_list_is_the_private_relay_egress_list() -> None:
    """Apple's egress list sits in Akamai, Cloudflare and Fastly space, IPv4 and IPv6."""
    networks = shipped(APPLE_RELAY_FILE)
    assert len(networks) > 1000
    assert {label for label, _ in networks} == {"apple"}
    assert {n.version for _, n in networks} == {4, 6}
    table = NetworkTable(networks)
    # 172.224.224.0/19-ish is Akamai's block of Private Relay egress; 104.28.0.0/16 Cloudflare's.
    assert parse_address("172.224.226.17") in table
    assert parse_address("104.28.0.1") in table or parse_address("104.28.32.1") in table
    assert parse_address("8.8.8.8") not in table


def test_shipped_scanner_and_crawler_lists_name_their_publishers() -> None:
    scanners = {label for label, _ in shipped(SCANNER_FILE)}
    assert {"microsoft", "proofpoint", "mimecast", "barracuda"} <= scanners
    crawlers = {label for label, _ in shipped(CRAWLER_FILE)}
    assert {"google", "bing"} <= crawlers
    eop = NetworkTable(shipped(SCANNER_FILE))
    assert eop.label_of(parse_address("40.107.22.15")) == "microsoft"
    assert NetworkTable(shipped(CRAWLER_FILE)).label_of(parse_address("66.249.66.1")) == "google"


@pytest.mark.parametrize("name", [n for n in NETWORK_FILES if n != "apple_mpp_ranges.txt"])
def test_every_snapshot_says_where_and_when_it_came_from(name: str) -> None:
    header = (DATA_DIR / name).read_text(encoding="utf-8")[:6000]
    assert re.search(r"https://\S+", header), name
    assert re.search(r"20\d\d-\d\d-\d\d", header), name
    assert "relay update-data" in header, name


def test_network_data_notices_a_replaced_file(tmp_path: Path) -> None:
    folder = tmp_path
    data = NetworkData.load(folder)
    assert not data.changed(folder)
    (folder / SCANNER_FILE).write_text("acme 198.18.0.0/15\n", encoding="utf-8")
    assert data.changed(folder)
    fresh = NetworkData.load(folder)
    assert fresh.scanners.label_of(parse_address("198.18.1.1")) == "acme"
