"""tracking.max_links_per_part: the first links of a part are tracked, the rest left alone."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from rewrite.mime_checks import check_rewrite
from rewrite.test_message_properties import messages
from rewrite.test_templates import copy_plan

from relay.rewrite import MAX_LINKS_PER_PART, prepare_template, render, rewrite_message

HEAD = b"From: a@example.com\r\nSubject: links\r\nMIME-Version: 1.0\r\n"


def html_part(count: int, host: str) -> bytes:
    links = "".join(f'<a href="https://{host}/{i}">item {i}</a>\r\n' for i in range(count))
    return f"<html><body>\r\n{links}</body></html>\r\n".encode()


def single_html(count: int) -> bytes:
    return HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + html_part(count, "a.example")


def tracked(raw: bytes) -> list[int]:
    return [int(n) for n in re.findall(rb'href="https://t\.test/c/1-(\d+)-', raw)]


def test_a_message_of_many_links_is_tracked_up_to_the_default_cap() -> None:
    raw = single_html(2500)
    result = rewrite_message(raw, copy_plan(1))
    assert MAX_LINKS_PER_PART == 1000
    assert len(result.links) == 1000 and tracked(result.raw) == list(range(1000))
    assert result.links[-1] == "https://a.example/999"
    for i in (1000, 1777, 2499):  # later links keep their href, byte for byte
        assert f'<a href="https://a.example/{i}">item {i}</a>'.encode() in result.raw
    assert result.parts_rewritten == 1
    [note] = result.notes
    assert "1500 links after the first 1000 left untracked" in note
    assert "max_links_per_part" in note
    check_rewrite(raw, result, copy_plan(1))


def test_the_cap_counts_each_part_on_its_own() -> None:
    raw = (
        HEAD + b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html_part(5, "a.example")
        + b"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        + html_part(2, "b.example")
        + b"--b--\r\n"
    )
    result = rewrite_message(raw, copy_plan(1, max_links=3))
    assert result.links == (
        *(f"https://a.example/{i}" for i in range(3)),
        "https://b.example/0",
        "https://b.example/1",
    )
    assert b'<a href="https://a.example/3">' in result.raw
    assert b'<a href="https://a.example/4">' in result.raw
    [note] = result.notes  # the second part is under the cap: no note for it
    assert "2 links after the first 3 left untracked" in note
    check_rewrite(raw, result, copy_plan(1, max_links=3))


def test_under_the_cap_there_is_no_note() -> None:
    result = rewrite_message(single_html(3), copy_plan(1, max_links=3))
    assert len(result.links) == 3 and result.notes == ()


def test_every_copy_rendered_from_a_template_is_capped_the_same() -> None:
    raw = single_html(40)
    template = prepare_template(raw, copy_plan(1, max_links=10))
    for copy in (1, 2):
        plan = copy_plan(copy, max_links=10)
        result = render(template, plan)
        assert result == rewrite_message(raw, plan)
        assert len(result.links) == 10 and len(result.notes) == 1


@given(messages(), st.integers(0, 3))
def test_a_capped_rewrite_never_raises_and_changes_only_what_it_tracks(
    raw: bytes, cap: int
) -> None:
    plan = copy_plan(5, max_links=cap)
    result = rewrite_message(raw, plan)
    check_rewrite(raw, result, plan)
