"""Helpers for the HTML rewriter tests: a recording track_link, plans, the round-trip check."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any

import pytest

from relay.rewrite import RewritePlan
from relay.rewrite.links import clean_url, decode_attribute_value, is_trackable_url

TRACK_PREFIX = "https://t.test/c/"
PIXEL_URL = "https://t.test/o/pixel.gif"
_TRACKED_VALUE = re.compile(r"([\"'])https://t\.test/c/(\d+)\1")


class LinkRecorder:
    """track_link for tests: numbered tracking URLs; urls[n] is the original of link n."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, url: str) -> str:
        self.urls.append(url)
        return f"{TRACK_PREFIX}{len(self.urls) - 1}"


def _unused_link_url(index: int, url: str) -> str:
    raise AssertionError("rewrite_html must use its track_link argument")


BASE_PLAN = RewritePlan(
    opens=False,
    clicks=True,
    pixel_url=PIXEL_URL,
    link_url=_unused_link_url,
    skip_bare_url_links=True,
)


def make_plan(**changes: Any) -> RewritePlan:
    return replace(BASE_PLAN, **changes)


def assert_round_trip(source: str, output: str, recorder: LinkRecorder, snippet: str) -> None:
    """Undo the rewrite: drop the snippet, map each tracking href back to its original text.

    What is left must be the source exactly, and each original value must decode to
    the URL track_link was given (an absolute http(s) URL).
    """
    if snippet:
        assert output.count(snippet) == source.count(snippet) + 1
        output = output.replace(snippet, "", 1)
    segments = _TRACKED_VALUE.split(output)
    literals, quotes, numbers = segments[0::3], segments[1::3], segments[2::3]
    assert sorted(int(n) for n in numbers) == list(range(len(recorder.urls)))
    pattern = "(.*?)".join(re.escape(literal) for literal in literals)
    match = re.fullmatch(pattern, source, re.DOTALL)
    assert match is not None, "output is not the source with href values replaced"
    for raw, quote, number in zip(match.groups(), quotes, numbers, strict=True):
        if quote == "'" or raw[:1] in "\"'":
            assert raw[:1] == quote and raw[-1:] == quote and len(raw) >= 2
            raw = raw[1:-1]
        url = recorder.urls[int(number)]
        assert clean_url(decode_attribute_value(raw)) == url
        assert is_trackable_url(url)


@contextmanager
def hang_guard(seconds: int) -> Iterator[None]:
    """Fail (rather than hang) when a pass is not linear; generous, not a benchmark."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"no answer within {seconds}s: superlinear scanning?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def recorder() -> LinkRecorder:
    return LinkRecorder()


@pytest.fixture(scope="session")
def plan_factory() -> Callable[..., RewritePlan]:
    return make_plan


@pytest.fixture(scope="session")
def recorder_class() -> type[LinkRecorder]:
    return LinkRecorder


@pytest.fixture(scope="session")
def round_trip() -> Callable[[str, str, LinkRecorder, str], None]:
    return assert_round_trip


@pytest.fixture(scope="session")
def time_guard() -> Callable[[int], Any]:
    return hang_guard
