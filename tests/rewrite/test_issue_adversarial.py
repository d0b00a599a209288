"""Issue 3, item 7: adversarial inputs never raise, never change what they may not, stay linear.

Random MIME trees, byte mutations and plain junk: test_message_properties.py;
random and structured HTML: test_html_properties.py; 5 MB of adversarial markup
under a guard: test_html.py::test_five_megabytes_of_adversarial_input. Here the
inputs that target one defence each: the depth limit, attribute counts, NUL
bytes, lone surrogates in encoded words, junk between boundaries.
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rewrite.byte_checks import assert_only_html_bodies_changed
from rewrite.mime_checks import PLAN, check_rewrite
from rewrite.test_message_properties import messages
from rewrite.test_mime import HTML, leaf, message, multipart

from relay.rewrite import Rewritten, rewrite_message
from relay.rewrite.mime import MAX_DEPTH

HTML_LEAF = leaf("text/html; charset=utf-8", HTML.encode(), "8bit")
SUBTYPES = st.sampled_from(["mixed", "alternative", "related"])


def safe_rewrite(raw: bytes) -> Rewritten:
    """rewrite_message with its promises checked: no swallowed exception, only HTML changed."""
    result = rewrite_message(raw, PLAN)
    assert not [n for n in result.notes if n.startswith("rewrite failed")], result.notes
    check_rewrite(raw, result)
    assert_only_html_bodies_changed(raw, result)
    return result


@given(st.lists(SUBTYPES, min_size=1, max_size=MAX_DEPTH + 40))
def test_nesting_past_the_limit_is_relayed_unchanged(subtypes: list[str]) -> None:
    body = HTML_LEAF
    for depth, subtype in enumerate(subtypes):
        body = multipart(subtype, body, boundary=f"d{depth}")
    raw = message(body)
    result = safe_rewrite(raw)
    if len(subtypes) > MAX_DEPTH:
        assert result.raw == raw and any("nested deeper" in n for n in result.notes)
    else:
        assert result.parts_rewritten == 1


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 60_000), st.sampled_from(["x=1 ", "b ", "data-a='q' ", "\n"]))
def test_huge_attribute_counts(time_guard: Any, count: int, attribute: str) -> None:
    html = f'<body><a {attribute * count}href="https://x.com/a">go</a></body>'
    raw = message(leaf("text/html; charset=utf-8", html.encode(), "8bit"))
    with time_guard(60):
        result = safe_rewrite(raw)
    assert result.links == ("https://x.com/a",)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_nul_bytes_anywhere(raw: bytes, data: st.DataObject) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(st.sampled_from([b"\x00", b"\x00\x00", b"=00"])) + raw[at:]
    safe_rewrite(raw)


def _encoded_word(text: str, charset: str) -> bytes:
    """An RFC 2047 word; surrogatepass lets a lone surrogate through as its raw octets."""
    octets = text.encode("utf-16-le" if charset == "utf-16le" else "utf-8", "surrogatepass")
    return b"=?" + charset.encode() + b"?B?" + base64.b64encode(octets) + b"?="


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=8),
    st.sampled_from(["utf-8", "utf-16le", "x-unknown"]),
)
def test_lone_surrogates_in_encoded_words(text: str, charset: str) -> None:
    word = _encoded_word(text, charset)
    attached = leaf(
        b'application/pdf; name="'.decode() + word.decode() + '"', b"JVBERi0=\n", "base64"
    )
    body = multipart("mixed", HTML_LEAF, attached)
    raw = b"Subject: " + word + b" " + word + b"\r\n" + message(body)
    result = safe_rewrite(raw)
    assert result.parts_rewritten == 1
    assert result.raw.startswith(b"Subject: " + word + b" " + word + b"\r\n")


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.binary(max_size=40) | st.sampled_from([b"--", b"--d", b"\n--d--x"]),
        min_size=3,
        max_size=3,
    )
)
def test_junk_between_boundaries(junk: list[bytes]) -> None:
    text = leaf("text/plain", b"hello", "7bit")
    body = multipart("alternative", text, HTML_LEAF, boundary="d", pre=junk[0])
    body = body.replace(b"hello\n--d\n", b"hello\n" + junk[1] + b"\n--d\n") + junk[2]
    safe_rewrite(message(body, crlf=False))
