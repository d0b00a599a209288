"""Tags from X-Tag and the hosted services' tag headers (relay/smtp/tags.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.core.config import SmtpConfig
from relay.smtp.message import header_map
from relay.smtp.tags import TAG_HEADERS, message_tags, tag_header_names


def tags_of(head: str) -> tuple[str, ...]:
    return message_tags(header_map(head.encode() + b"\r\nbody\r\n"))


def test_every_convention_is_read_in_order() -> None:
    head = (
        "Subject: hi\r\n"
        "X-Tag: welcome, Onboarding \r\n"
        "X-MC-Tags: mc-one,mc-two\r\n"
        "X-Mailgun-Tag: mg one\r\n"
        "X-Mailgun-Tag: mg, two\r\n"
        "X-PM-Tag: postmark\r\n"
        "X-SES-MESSAGE-TAGS: campaign=spring, variant=b, broken, =x\r\n"
        'X-SMTPAPI: {"category": ["sg-a", "sg-b", 3], "unique_args": {"u": 1}}\r\n'
    )
    assert tags_of(head) == (
        "welcome",
        "Onboarding",
        "mc-one",
        "mc-two",
        "mg one",
        "mg, two",  # Mailgun: one tag per header, commas and all
        "postmark",
        "campaign:spring",
        "variant:b",
        "sg-a",
        "sg-b",
    )


def test_sendgrid_category_may_be_a_string_and_json_may_be_bad() -> None:
    assert tags_of('X-SMTPAPI: {"category": "newsletter"}\r\n') == ("newsletter",)
    assert tags_of("X-SMTPAPI: {not json\r\n") == ()
    assert tags_of('X-SMTPAPI: ["category"]\r\n') == ()


def test_limits_trimming_case_and_encoded_words() -> None:
    many = ", ".join(f"t{i}" for i in range(30))
    tags = tags_of(f"X-Tag: {many}\r\n")
    assert len(tags) == 20 and tags[0] == "t0"
    assert tags_of("X-Tag: " + "x" * 300 + "\r\n") == ("x" * 100,)
    assert tags_of("X-Tag: Promo, PROMO,  promo  , ,\r\n") == ("Promo",)
    assert tags_of("X-Tag: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n") == ("Grüße",)
    assert tags_of("X-Tag: a\r\n\tb, c\r\n") == ("a b", "c")  # folded


def test_pass_through_strips_only_ours() -> None:
    assert set(tag_header_names(SmtpConfig())) == set(TAG_HEADERS)
    assert tag_header_names(SmtpConfig(pass_through_tracking_headers=True)) == ("x-tag",)


@given(st.dictionaries(st.sampled_from(TAG_HEADERS), st.lists(st.text(max_size=300), max_size=4)))
def test_bad_input_never_raises(headers: dict[str, list[str]]) -> None:
    tags = message_tags(headers)
    assert len(tags) <= 20
    assert all(0 < len(t) <= 100 and t == t.strip() for t in tags)
    assert len({t.casefold() for t in tags}) == len(tags)
