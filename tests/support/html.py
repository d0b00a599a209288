"""One HTML part rewritten as a string: the rewriter's scan with its edits applied.

The relay itself applies the edits to the part's bytes (relay.rewrite.mime);
tests of the scan compare whole strings.
"""

from __future__ import annotations

from relay.rewrite import RewritePlan
from relay.rewrite.html import PixelAt, TrackLink, scan_part
from relay.rewrite.markup import apply_edits


def html_edits(
    html: str, plan: RewritePlan, pixel_at: PixelAt, track_link: TrackLink
) -> list[tuple[int, int, str]]:
    """The (start, end, replacement) spans the scan makes, sorted and disjoint."""
    return scan_part(html, plan, pixel_at, track_link).edits


def rewrite_html(html: str, plan: RewritePlan, pixel_at: PixelAt, track_link: TrackLink) -> str:
    """html with tracked hrefs, opt-out attributes removed and the pixel added."""
    return apply_edits(html, html_edits(html, plan, pixel_at, track_link))
