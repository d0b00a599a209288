"""Pure bytes -> bytes rewriting of a message's HTML body parts.

No I/O, no SMTP, no SQL, so it can be hammered by hypothesis and benchmarked
alone. rewrite_message rewrites one copy; delivery makes the copies of one
message with prepare_template (the MIME survey, decoding and HTML scan, once)
and render (each copy's URLs), which give the same bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from relay.rewrite import mime
from relay.rewrite.markup import apply_edits, escape_attribute, tracking_snippet

AUTO_TOP_THRESHOLD = 102400  # Gmail clips HTML near 100 KB: a bottom pixel would never load
MAX_LINKS_PER_PART = 1000  # tracking.max_links_per_part's default
# Spam filters read an HTML part with an <img> in at most this much HTML source as
# "image-only" (SpamAssassin's HTML_IMAGE_ONLY_04 .. _32 count 0-3,200 characters of it,
# the tags included; which image, where, and how big does not matter).
IMAGE_ONLY_CHARS = 3200
IMAGE_ONLY_NOTE = "open tracking skipped: would read as image-only"


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
    # Links tracked in one HTML part, in document order; later ones keep their href.
    max_links_per_part: int = MAX_LINKS_PER_PART
    # No pixel in a part where it would be the only image in at most IMAGE_ONLY_CHARS
    # of HTML (filters would read the mail as image-only); the copy's notes say so.
    guard_image_only: bool = False


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
    return render(prepare_template(raw, plan), plan)


# Stand-ins for a copy's own URLs while a message is scanned once for all its copies.
# A stand-in has no '&', '"' or "'", so escape_attribute leaves it as it is, and only
# the rewriter's own replacement texts can hold one (the scanner copies no source text).
_CALL = "\x00{}\x00"
_PIXEL_MARK = "\x00pixel\x00"
_HONEYPOT_MARK = "\x00honeypot\x00"

Shape = tuple[object, ...]


def plan_shape(plan: RewritePlan) -> Shape:
    """Everything in a plan but the copy's own URLs: copies of one shape share a template."""
    return (
        plan.opens,
        plan.clicks,
        plan.pixel_position,
        plan.skip_bare_url_links,
        plan.exclude_links,
        plan.own_base_urls,
        plan.honeypot_url is not None,
        plan.max_links_per_part,
        plan.guard_image_only,
    )


@dataclass(frozen=True)
class _PartTemplate:
    """One HTML part, scanned: its edits with stand-ins, and the links met on the way.

    calls are the URLs the scanner asked to track, in its order; links are
    (edit number, call number, quote) and snippet the edit number of the pixel
    and honeypot markup, if any; untracked counts the links over the plan's
    max_links_per_part, left as they were; images the part's own <img> tags.
    """

    part: mime.DecodedHtml
    edits: tuple[tuple[int, int, str], ...]
    calls: tuple[str, ...]
    links: tuple[tuple[int, int, str], ...]
    snippet: int | None
    untracked: int = 0
    images: int = 0


@dataclass(frozen=True)
class MessageTemplate:
    """A message surveyed, decoded and scanned once; render() makes each copy from it.

    Each copy differs only in its URLs (pixel, links, honeypot), so the costly
    part of a rewrite (MIME survey, decoding, the HTML scan) is done once per
    message. ``done`` is the result for every copy when nothing is to be
    rewritten (tracking off, no HTML body, signed mail, malformed MIME).
    """

    raw: bytes
    shape: Shape
    parts: tuple[_PartTemplate | str, ...] = ()  # a str: why that part is left alone
    done: Rewritten | None = None


def prepare_template(raw: bytes, plan: RewritePlan) -> MessageTemplate:
    """The template for every copy of raw whose plan has this plan's shape; never raises."""
    shape = plan_shape(plan)
    try:
        return _template(raw, plan, shape)
    except Exception as exc:  # tracking never costs a message
        return _left_alone(raw, shape, f"rewrite failed: {type(exc).__name__}: {exc}")


def _left_alone(raw: bytes, shape: Shape, note: str) -> MessageTemplate:
    """The template of a message that every copy relays as it is, with the reason."""
    return MessageTemplate(raw, shape, done=Rewritten(raw=raw, notes=(note,)))


def render(template: MessageTemplate, plan: RewritePlan) -> Rewritten:
    """One copy's rewrite; the same bytes rewrite_message would make. Never raises."""
    if plan_shape(plan) != template.shape:
        return rewrite_message(template.raw, plan)
    if template.done is not None:
        return template.done
    try:
        return _render(template, plan)
    except Exception as exc:  # tracking never costs a message
        note = f"rewrite failed: {type(exc).__name__}: {exc}"
        return Rewritten(raw=template.raw, notes=(note,))


def _changes(text: str, spans: list[tuple[int, int, str]]) -> bool:
    """Whether the spans change text, mostly told without building the new text."""
    if all(text[start:end] == new for start, end, new in spans):
        return False
    if sum(len(new) - (end - start) for start, end, new in spans):
        return True
    return apply_edits(text, spans) != text


def _template(raw: bytes, plan: RewritePlan, shape: Shape) -> MessageTemplate:
    # Imported here: html.py imports RewritePlan from this package.
    from relay.rewrite.html import scan_part

    if not (plan.opens or plan.clicks):
        return _left_alone(raw, shape, "tracking off")
    try:
        found = mime.survey(raw)
    except mime.MalformedMime as exc:
        return _left_alone(raw, shape, f"malformed MIME: {exc}")
    if found.content_types & mime.SIGNED_OR_ENCRYPTED:
        return _left_alone(raw, shape, "signed or encrypted")
    if not found.html_bodies:
        return _left_alone(raw, shape, "no HTML body part")
    # The plan with nothing of this copy left in it.
    stand_in = dataclasses.replace(
        plan,
        pixel_url=_PIXEL_MARK,
        link_url=_no_link_url,
        honeypot_url=_HONEYPOT_MARK if plan.honeypot_url is not None else None,
    )
    snippet = tracking_snippet(stand_in)
    parts: list[_PartTemplate | str] = []
    for entity in found.html_bodies:
        try:
            part = mime.decode_html(raw, entity)
        except mime.PartLeftAlone as exc:
            parts.append(f"HTML part at offset {entity.start} left alone: {exc}")
            continue
        calls: list[str] = []

        def call(url: str, calls: list[str] = calls) -> str:
            calls.append(url)
            return _CALL.format(len(calls) - 1)

        scanned = scan_part(part.text, stand_in, pixel_at(plan, part.size), call)
        edits = scanned.edits
        links: list[tuple[int, int, str]] = []
        at: int | None = None
        for number, (_start, _end, new) in enumerate(edits):
            if len(new) > 3 and new[1] == "\x00" and new[-2] == "\x00":
                links.append((number, int(new[2:-2]), new[0]))
            elif snippet and new == snippet:
                at = number
        parts.append(
            _PartTemplate(
                part,
                tuple(edits),
                tuple(calls),
                tuple(links),
                at,
                scanned.untracked,
                scanned.images,
            )
        )
    return MessageTemplate(raw, shape, tuple(parts))


def filter_length(text: str, spans: list[tuple[int, int, str]]) -> int:
    """The length of text with spans applied as a filter counts it, at the least.

    SpamAssassin counts the part's decoded HTML source with CRLF line ends as LF,
    in characters or (for 8-bit text) in octets: never fewer than this.
    """
    grown = sum(len(new) - (end - start) for start, end, new in spans)
    return len(text) + grown - text.count("\r\n")


def _no_link_url(index: int, url: str) -> str:  # pragma: no cover - never called
    raise AssertionError("the stand-in plan's links go through the scan's own callback")


def _render(template: MessageTemplate, plan: RewritePlan) -> Rewritten:
    """The original algorithm with the scan replayed: same link order, same rollbacks."""
    raw = template.raw
    links = LinkRegistry(plan)
    edits: list[tuple[int, int, bytes]] = []
    notes: list[str] = []
    rewritten = 0
    for scanned in template.parts:
        if isinstance(scanned, str):
            notes.append(scanned)
            continue
        checkpoint = len(links.urls)
        part = scanned.part
        try:
            urls = [links.track(url) for url in scanned.calls]
            spans = list(scanned.edits)
            for number, call, quote in scanned.links:
                start, end, _ = spans[number]
                spans[number] = (start, end, quote + escape_attribute(urls[call], quote) + quote)
            if scanned.snippet is not None:
                start, end, _ = spans[scanned.snippet]
                spans[scanned.snippet] = (start, end, tracking_snippet(plan))
                if plan.guard_image_only and plan.opens and not scanned.images:
                    length = filter_length(part.text, spans)
                    if length <= IMAGE_ONLY_CHARS:
                        spans[scanned.snippet] = (start, end, tracking_snippet(plan, pixel=False))
                        notes.append(
                            f"{IMAGE_ONLY_NOTE} (HTML part at offset {part.entity.start}:"
                            f" {length} characters with the pixel, no image of its own)"
                        )
            if _changes(part.text, spans):
                edits.extend(mime.encode_html(raw, part, spans))
                rewritten += 1
            if scanned.untracked:
                notes.append(
                    f"HTML part at offset {part.entity.start}: {scanned.untracked} links after"
                    f" the first {plan.max_links_per_part} left untracked (max_links_per_part)"
                )
        except mime.PartLeftAlone as exc:
            links.rollback(checkpoint)
            notes.append(f"HTML part at offset {part.entity.start} left alone: {exc}")
    return Rewritten(mime.splice(raw, edits), tuple(links.urls), rewritten, tuple(notes))
