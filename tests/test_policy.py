"""relay.policy: relaying rights, sender binding, tracking decisions, control headers."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest

from relay.core.config import (
    Config,
    DkimConfig,
    SmtpConfig,
    SmtpUser,
    TrackingConfig,
    TrackingPolicy,
)
from relay.policy import (
    address_matches,
    control_header_names,
    decide_tracking,
    may_relay,
    sender_allowed,
)

OFFICE = SmtpConfig(
    allowed_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
)


@pytest.mark.parametrize(
    ("peer", "user", "allowed"),
    [
        ("10.1.2.3", None, True),
        ("11.1.2.3", None, False),
        ("::ffff:10.1.2.3", None, True),  # dual-stack listener
        ("::ffff:11.1.2.3", None, False),
        ("2001:db8::1", None, True),
        ("2001:db9::1", None, False),
        ("fe80::1%eth0", None, False),
        ("11.1.2.3", "alice", True),
        ("", None, False),
        ("not-an-ip", None, False),
        ("127.0.0.1", None, False),  # only what is configured
    ],
)
def test_may_relay(peer: str, user: str | None, allowed: bool) -> None:
    assert may_relay(OFFICE, peer, user) is allowed


def test_defaults_relay_for_loopback_only() -> None:
    assert may_relay(SmtpConfig(), "127.0.0.1", None)
    assert may_relay(SmtpConfig(), "::1", None)
    assert not may_relay(SmtpConfig(), "192.0.2.1", None)


@pytest.mark.parametrize(
    ("pattern", "address", "matches"),
    [
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "Alice@Example.COM", True),
        ("ALICE@example.com", "alice@example.com", True),
        ("alice@example.com", "<alice@example.com>", True),
        ("alice@example.com", "alice@example.com.evil", False),
        ("alice@example.com", "malice@example.com", False),
        ("*@sales.example.com", "bob@sales.example.com", True),
        ("*@sales.example.com", "bob@example.com", False),
        ("*@example.com", "bob@example.com", True),
        ("*@example.com", "bob@sub.example.com", False),
        ("*@example.com", "bob@evilexample.com", False),
        ("*@*.example.com", "bob@sub.example.com", True),
        ("*@*.example.com", "bob@a.b.example.com", True),
        ("*@*.example.com", "bob@example.com", False),
        ("*@example.com", "a@b@example.com", False),  # "*" never crosses "@"
        ("[ab]@example.com", "a@example.com", False),  # no character classes
        ("[ab]@example.com", "[ab]@example.com", True),
        ("a?c@example.com", "abc@example.com", False),  # no "?" wildcard
        ("a.c@example.com", "abc@example.com", False),  # "." is literal
        ("*@example.com", "", False),
    ],
)
def test_address_matches(pattern: str, address: str, matches: bool) -> None:
    assert address_matches(pattern, address) is matches


def test_sender_allowed() -> None:
    anyone = SmtpUser("alice", "h")
    bound = SmtpUser("alice", "h", ("alice@example.com", "*@sales.example.com"))
    assert sender_allowed(anyone, "whoever@anywhere.example")
    assert sender_allowed(bound, "ALICE@example.com")
    assert sender_allowed(bound, "team@sales.example.com")
    assert not sender_allowed(bound, "bob@example.com")
    assert not sender_allowed(bound, "")  # the null sender is someone else's bounce


def decide(
    config: Config | None = None,
    headers: dict[str, list[str]] | None = None,
    sender: str = "alice@example.com",
    auth_user: str | None = None,
) -> tuple[bool, bool]:
    decision = decide_tracking(
        config or Config(), sender=sender, auth_user=auth_user, headers=headers or {}
    )
    return decision.opens, decision.clicks


# header name, value, (opens, clicks) when both start on
HEADERS = [
    ("x-track", "none", (False, False)),
    ("x-track", "None", (False, False)),
    ("x-track", "opens", (True, False)),
    ("x-track", "clicks", (False, True)),
    ("x-track", "all", (True, True)),
    ("x-track", " ALL ", (True, True)),
    ("x-track", "opens, clicks", (True, True)),
    ("x-track", "bogus", (True, True)),
    ("x-track", "", (True, True)),
    ("x-mailgun-track", "yes", (True, True)),
    ("x-mailgun-track", "true", (True, True)),
    ("x-mailgun-track", "no", (False, False)),
    ("x-mailgun-track", "false", (False, False)),
    ("x-mailgun-track", "False", (False, False)),
    ("x-mailgun-track", "htmlonly", (True, True)),
    ("x-mailgun-track", "maybe", (True, True)),
    ("x-mailgun-track-opens", "yes", (True, True)),
    ("x-mailgun-track-opens", "true", (True, True)),
    ("x-mailgun-track-opens", "no", (False, True)),
    ("x-mailgun-track-opens", "false", (False, True)),
    ("x-mailgun-track-clicks", "yes", (True, True)),
    ("x-mailgun-track-clicks", "true", (True, True)),
    ("x-mailgun-track-clicks", "htmlonly", (True, True)),
    ("x-mailgun-track-clicks", "no", (True, False)),
    ("x-mailgun-track-clicks", "false", (True, False)),
    ("x-pm-trackopens", "true", (True, True)),
    ("x-pm-trackopens", "false", (False, True)),
    ("x-pm-trackopens", "FALSE", (False, True)),
    ("x-pm-tracklinks", "None", (True, False)),
    ("x-pm-tracklinks", "HtmlAndText", (True, True)),
    ("x-pm-tracklinks", "HtmlOnly", (True, True)),
    ("x-pm-tracklinks", "TextOnly", (True, False)),
    ("x-pm-tracklinks", "Sometimes", (True, True)),
    ("x-mc-track", "opens", (True, False)),
    ("x-mc-track", "clicks_all", (False, True)),
    ("x-mc-track", "clicks_htmlonly", (False, True)),
    ("x-mc-track", "clicks_textonly", (False, False)),
    ("x-mc-track", "opens, clicks_all", (True, True)),
    ("x-mc-track", "opens,clicks_htmlonly", (True, True)),
    ("x-mc-track", "opens, clicks_textonly", (True, False)),
    ("x-mc-track", "whatever", (True, True)),
]


@pytest.mark.parametrize(("name", "value", "expected"), HEADERS)
def test_header_from_all_on(name: str, value: str, expected: tuple[bool, bool]) -> None:
    assert decide(headers={name: [value]}) == expected


@pytest.mark.parametrize(("name", "value", "expected"), HEADERS)
def test_header_never_turns_tracking_on(name: str, value: str, expected: tuple[bool, bool]) -> None:
    del expected
    off = Config(tracking=TrackingConfig(opens=False, clicks=False))
    assert decide(off, headers={name: [value]}) == (False, False)


def test_header_reasons_name_the_header() -> None:
    decision = decide_tracking(
        Config(),
        sender="a@example.com",
        auth_user=None,
        headers={"x-pm-tracklinks": ["None"], "x-track": ["bogus"]},
    )
    assert "X-PM-TrackLinks: None: clicks off" in decision.reasons
    assert "X-Track: bogus not understood, ignored" in decision.reasons


def test_several_headers_combine_and_any_off_wins() -> None:
    headers = {"x-track": ["all"], "x-mailgun-track-opens": ["no"], "x-pm-tracklinks": ["None"]}
    assert decide(headers=headers) == (False, False)
    assert decide(headers={"x-track": ["all", "none"]}) == (False, False)


SALES = TrackingPolicy(match="*@sales.example.com", clicks=False, log_copy=True,
                       base_url="https://links.sales.example.com")  # fmt: skip
ALICE = TrackingPolicy(user="alice", opens=True, clicks=True)
QUIET = Config(tracking=TrackingConfig(opens=False, clicks=False, policy=(SALES, ALICE)))


def test_no_policy_uses_config_switches() -> None:
    decision = decide_tracking(QUIET, sender="x@example.com", auth_user="bob", headers={})
    assert (decision.opens, decision.clicks, decision.log_copy) == (False, False, False)
    assert decision.base_url == "http://127.0.0.1:8080"
    assert decision.reasons == ("config: opens off, clicks off",)


def test_first_matching_policy_wins_and_sets_everything() -> None:
    decision = decide_tracking(
        QUIET, sender="Team@Sales.example.com", auth_user="alice", headers={}
    )
    assert (decision.opens, decision.clicks, decision.log_copy) == (True, False, True)
    assert decision.base_url == "https://links.sales.example.com"
    assert decision.reasons[0].startswith("tracking.policy[1] (match *@sales.example.com)")


def test_policy_by_user() -> None:
    decision = decide_tracking(QUIET, sender="a@example.com", auth_user="alice", headers={})
    assert (decision.opens, decision.clicks) == (True, True)
    assert decision.base_url == "http://127.0.0.1:8080"  # empty policy base_url
    assert decision.reasons[0].startswith("tracking.policy[2] (user alice)")
    assert decide(QUIET, sender="a@example.com", auth_user=None) == (False, False)


def test_headers_turn_off_after_policy() -> None:
    headers = {"x-track": ["clicks"]}
    assert decide(QUIET, headers=headers, sender="a@example.com", auth_user="alice") == (
        False,
        True,
    )


def test_dkim_signed_without_key_is_untracked() -> None:
    decision = decide_tracking(
        Config(), sender="a@example.com", auth_user=None, headers={"dkim-signature": ["v=1"]}
    )
    assert (decision.opens, decision.clicks) == (False, False)
    assert decision.reasons[-1] == "DKIM-signed and no [dkim] key"


def test_dkim_signed_with_key_stays_tracked() -> None:
    config = Config(dkim=DkimConfig("example.com", "relay", "dkim.pem"))
    assert decide(config, headers={"dkim-signature": ["v=1"]}) == (True, True)


def test_dkim_signed_with_key_is_to_be_signed_again() -> None:
    config = Config(dkim=DkimConfig("example.com", "relay", "dkim.pem"))
    signed = {"dkim-signature": ["v=1"]}
    decision = decide_tracking(config, sender="a@example.com", auth_user=None, headers=signed)
    assert decision.resign is True
    assert decision.reasons[-1].startswith("DKIM-signed: a rewritten copy is signed again")
    unsigned = decide_tracking(config, sender="a@example.com", auth_user=None, headers={})
    assert unsigned.resign is False
    off = decide_tracking(
        config, sender="", auth_user=None, headers={**signed, "x-track": ["none"]}
    )
    assert off.resign is False  # nothing rewritten, nothing to sign


def test_the_rewrite_settings_are_decided_with_the_message() -> None:
    tracking = TrackingConfig(
        pixel_position="top", honeypot=True, skip_bare_url_links=False,
        exclude_links=(re.compile("unsubscribe"),), max_links_per_part=7, avoid_image_only=False,
    )  # fmt: skip
    decision = decide_tracking(
        Config(tracking=tracking), sender="a@example.com", auth_user=None, headers={}
    )
    assert (decision.pixel_position, decision.honeypot, decision.skip_bare_url_links) == (
        "top",
        True,
        False,
    )
    assert decision.exclude_links == ("unsubscribe",)
    assert (decision.max_links_per_part, decision.avoid_image_only) == (7, False)


def test_per_recipient_comes_from_config() -> None:
    shared = Config(tracking=TrackingConfig(per_recipient=False))
    decision = decide_tracking(shared, sender="a@example.com", auth_user=None, headers={})
    assert decision.per_recipient is False
    assert decide_tracking(Config(), sender="", auth_user=None, headers={}).per_recipient


HOSTED = (
    "x-mailgun-track",
    "x-mailgun-track-opens",
    "x-mailgun-track-clicks",
    "x-pm-trackopens",
    "x-pm-tracklinks",
    "x-mc-track",
)


def test_control_header_names() -> None:
    assert control_header_names(SmtpConfig()) == ("x-track", *HOSTED, "x-track-log")
    passing = dataclasses.replace(SmtpConfig(), pass_through_tracking_headers=True)
    assert control_header_names(passing) == ("x-track", "x-track-log")
