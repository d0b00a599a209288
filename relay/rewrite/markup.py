"""The markup the rewriter adds, and how edits are put into a str.

Kept apart from the scanner (html.py), which only finds where edits go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the package imports this module: no import back at run time
    from relay.rewrite import RewritePlan

# The pixel: 1x1, no border/margin, alt="" so a blocked image shows nothing, display:block
# so it never adds a line box or inline gap. Not display:none: some clients then skip it.
PIXEL_TEMPLATE = (
    '<img src="{url}" width="1" height="1" alt="" border="0" '
    'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;" />'
)
# The honeypot: an empty, hidden, unfocusable link; only a machine ever follows it.
HONEYPOT_TEMPLATE = (
    '<a href="{url}" style="display:none !important;" aria-hidden="true" tabindex="-1"></a>'
)


def escape_attribute(value: str, quote: str = '"') -> str:
    """Escape a value for a quoted attribute, so a URL's '&' stays a literal '&'."""
    escaped = value.replace("&", "&amp;").replace('"', "&quot;")
    return escaped.replace("'", "&#39;") if quote == "'" else escaped


def tracking_snippet(plan: RewritePlan, pixel: bool = True) -> str:
    """The markup inserted at the pixel position: pixel (opens, unless not pixel) and honeypot."""
    snippet = (
        PIXEL_TEMPLATE.format(url=escape_attribute(plan.pixel_url)) if plan.opens and pixel else ""
    )
    if plan.honeypot_url:
        snippet += HONEYPOT_TEMPLATE.format(url=escape_attribute(plan.honeypot_url))
    return snippet


def apply_edits(html: str, edits: list[tuple[int, int, str]]) -> str:
    """html with each sorted, disjoint span replaced; one join of slices."""
    if not edits:
        return html
    pieces: list[str] = []
    cursor = 0
    for start, end, replacement in edits:
        pieces.append(html[cursor:start])
        pieces.append(replacement)
        cursor = end
    pieces.append(html[cursor:])
    return "".join(pieces)
