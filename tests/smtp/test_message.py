"""What the SMTP front reads from headers and the trace fields it writes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.core.config import Config, SmtpConfig
from relay.smtp.message import (
    decode_subject,
    from_addresses,
    header_map,
    received_header,
    referenced_ids,
    valid_address,
)

CONFIG = Config(smtp=SmtpConfig(hostname="relay.test"))


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com",
        "first.last+tag@sub.example.co.uk",
        "x@[192.0.2.1]",
        "ü@bücher.de",
        '"a b"@c.de',
    ],
)
def test_valid_addresses(address: str) -> None:
    assert valid_address(address)


@pytest.mark.parametrize(
    "address",
    ["", "nodomain", "@example.com", "a@", "a b@c.de", "a@exa mple.com", "a@b..c", "a<b@c.de",
     "a@b@", "x" * 400 + "@example.com", "a\x00@b.de", "a@[1.2.3.4"],
)  # fmt: skip
def test_invalid_addresses(address: str) -> None:
    assert not valid_address(address)


def test_subject_decoding() -> None:
    raw = b"Subject: =?utf-8?b?R3LDvMOfZQ==?= =?iso-8859-1?q?caf=E9?=\r\n\r\n"
    assert decode_subject(raw) == "Grüßecafé"
    assert decode_subject(b"Subject: =?bogus-charset?q?x?=\r\n\r\n") == "=?bogus-charset?q?x?="
    assert decode_subject(b"Subject: =?utf-8?b?not base64!?=\r\n\r\n").startswith("=?utf-8?b?")
    assert decode_subject(b"From: a@b.c\r\n\r\n") == ""
    assert len(decode_subject(b"Subject: " + b"x " * 5000 + b"\r\n\r\n")) <= 998


@given(st.binary(max_size=300))
def test_subject_decoding_never_raises(value: bytes) -> None:
    decode_subject(b"Subject: " + value.replace(b"\n", b" ") + b"\r\n\r\nbody")


def test_from_and_references() -> None:
    raw = (
        b"From: Alice <alice@example.com>, bob@example.net\r\n"
        b"In-Reply-To: <one@x>\r\n"
        b"References: <zero@x>\r\n <one@x>\r\n"
        b"Subject: x\r\n\r\nFrom: not@header.example\r\n"
    )
    assert from_addresses(raw) == ["alice@example.com", "bob@example.net"]
    assert referenced_ids(raw) == ("<one@x>", "<zero@x>")
    assert header_map(raw)["subject"] == ["x"]
    assert header_map(raw)["references"] == ["<zero@x> <one@x>"]


def test_received_header_shape_and_hostile_helo() -> None:
    line = received_header(
        CONFIG, helo="evil\r\nX-Injected: 1 (", ip="::1", protocol="ESMTPSA", rcpt_tos=("b@x.de",)
    )
    assert "\r" not in line and "X-Injected: 1" not in line
    unfolded = re.sub(r"\n\t", " ", line)
    assert re.fullmatch(
        r"Received: from evil\?\?X-Injected:\?1\?\? \(\[IPv6:::1\]\) by relay\.test "
        r"with ESMTPSA id [0-9a-f]{16} for <b@x\.de>; \w{3}, .+",
        unfolded,
    )
    several = received_header(
        CONFIG, helo="", ip="192.0.2.7", protocol="ESMTP", rcpt_tos=("a@b.c", "d@e.f")
    )
    assert "for <" not in several and "from unknown ([192.0.2.7])" in several
