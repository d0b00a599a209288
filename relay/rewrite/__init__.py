"""Pure bytes -> bytes rewriting of a message's HTML body parts.

No I/O, no SMTP, no SQL: rewrite_message is the single entry point, so it can
be hammered by hypothesis and benchmarked alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RewritePlan:
    """What to add to one copy; built by the delivery worker from the policy decision."""

    opens: bool
    clicks: bool
    pixel_url: str  # full URL of this copy's pixel
    link_url: Callable[[int, str], str]  # (link index, original decoded URL) -> tracking URL
    pixel_position: Literal["auto", "top", "bottom"] = "auto"
    skip_bare_url_links: bool = True
    exclude_links: tuple[re.Pattern[str], ...] = ()
    own_base_urls: tuple[str, ...] = ()  # links already pointing here are not wrapped again
    honeypot_url: str | None = None  # an invisible link added when set


@dataclass(frozen=True)
class Rewritten:
    raw: bytes  # the whole message, rewritten (or the original bytes)
    links: tuple[str, ...] = ()  # tracked URLs; link index i is links[i]
    parts_rewritten: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)  # why something was left alone


def rewrite_message(raw: bytes, plan: RewritePlan) -> Rewritten:
    """Rewrite the HTML body parts of raw; never raises, never touches other bytes."""
    raise NotImplementedError
