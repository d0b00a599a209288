"""Pure bytes -> bytes rewriting of a message's HTML body parts.

No I/O, no SMTP, no SQL: rewrite_message is the single entry point, so it can
be hammered by hypothesis and benchmarked alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from relay.rewrite.markup import apply_edits

AUTO_TOP_THRESHOLD = 102400  # Gmail clips HTML near 100 KB: a bottom pixel would never load


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


class LinkRegistry:
    """One index per distinct URL across the whole message; undone for a part left alone."""

    def __init__(self, plan: RewritePlan) -> None:
        self.plan = plan
        self.urls: list[str] = []
        self.index: dict[str, int] = {}

    def track(self, url: str) -> str:
        index = self.index.get(url)
        if index is None:
            index = self.index[url] = len(self.urls)
            self.urls.append(url)
        return self.plan.link_url(index, url)

    def rollback(self, size: int) -> None:
        for url in self.urls[size:]:
            del self.index[url]
        del self.urls[size:]


def pixel_at(plan: RewritePlan, decoded_size: int) -> Literal["top", "bottom"]:
    """ "auto" is bottom unless the part is big enough for Gmail to clip it."""
    if plan.pixel_position != "auto":
        return plan.pixel_position
    return "top" if decoded_size > AUTO_TOP_THRESHOLD else "bottom"


def rewrite_message(raw: bytes, plan: RewritePlan) -> Rewritten:
    """Rewrite the HTML body parts of raw; never raises, never touches other bytes."""
    try:
        return _rewrite_message(raw, plan)
    except Exception as exc:  # tracking never costs a message
        return Rewritten(raw=raw, notes=(f"rewrite failed: {type(exc).__name__}: {exc}",))


def _changes(text: str, spans: list[tuple[int, int, str]]) -> bool:
    """Whether the spans change text, mostly told without building the new text."""
    if all(text[start:end] == new for start, end, new in spans):
        return False
    if sum(len(new) - (end - start) for start, end, new in spans):
        return True
    return apply_edits(text, spans) != text


def _rewrite_message(raw: bytes, plan: RewritePlan) -> Rewritten:
    # Imported here: html.py imports RewritePlan from this package.
    from relay.rewrite import mime
    from relay.rewrite.html import html_edits

    if not (plan.opens or plan.clicks):
        return Rewritten(raw=raw, notes=("tracking off",))
    try:
        found = mime.survey(raw)
    except mime.MalformedMime as exc:
        return Rewritten(raw=raw, notes=(f"malformed MIME: {exc}",))
    if found.content_types & mime.SIGNED_OR_ENCRYPTED:
        return Rewritten(raw=raw, notes=("signed or encrypted",))
    if not found.html_bodies:
        return Rewritten(raw=raw, notes=("no HTML body part",))
    links = LinkRegistry(plan)
    edits: list[tuple[int, int, bytes]] = []
    notes: list[str] = []
    rewritten = 0
    for entity in found.html_bodies:
        checkpoint = len(links.urls)
        try:
            part = mime.decode_html(raw, entity)
            spans = html_edits(part.text, plan, pixel_at(plan, part.size), links.track)
            if _changes(part.text, spans):
                edits.extend(mime.encode_html(raw, part, spans))
                rewritten += 1
        except mime.PartLeftAlone as exc:
            links.rollback(checkpoint)
            notes.append(f"HTML part at offset {entity.start} left alone: {exc}")
    return Rewritten(mime.splice(raw, edits), tuple(links.urls), rewritten, tuple(notes))
