"""Tokenizer-level rewriting of one HTML body: href values, opt-out attributes, the pixel.

The scanner walks the str once, left to right, never re-parsing what it has
passed, and records edits as (start, end, replacement) spans; the output is the
input with only those spans replaced. Nothing is re-serialized, so doctypes,
Outlook conditional comments, odd whitespace and broken markup survive as sent.
Every regex uses possessive quantifiers or a literal search, and an unterminated
construct (tag, comment, quote, script) swallows the rest of the input exactly
as the HTML tokenizer does, so the pass is linear even on adversarial input.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Literal

from relay.rewrite import RewritePlan
from relay.rewrite.links import (
    MAX_LINK_TEXT,
    OPT_OUT_NAMES,
    clean_url,
    decode_attribute_value,
    is_bare_url_text,
    is_excluded,
    is_opt_out_attribute,
    is_own_url,
    is_trackable_url,
)
from relay.rewrite.markup import escape_attribute, tracking_snippet
from relay.rewrite.patterns import ATTR, CC_OPEN, COMMENT_END, SKIP, SKIP_TO_LINK, TAG

_WS = "\t\n\f\r "
# Elements whose content is text to the tokenizer: links in them are not links.
_RAW_TEXT = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes"}
)
_LINK_TAGS = frozenset({"a", "area"})


@dataclass
class _Anchor:
    """An <a> whose tracking waits for its visible text (skip_bare_url_links)."""

    value_start: int
    value_end: int
    quote: str
    url: str
    text: list[str] = field(default_factory=list)
    text_len: int = 0


@dataclass
class _Scanner:
    """State of one left-to-right pass; all positions index into source."""

    source: str
    plan: RewritePlan
    track_link: Callable[[str], str]
    edits: list[tuple[int, int, str]] = field(default_factory=list)
    in_conditional: bool = False
    anchor: _Anchor | None = None
    seen_tag: bool = False
    doctype_end: int | None = None
    html_open_end: int | None = None
    body_open_end: int | None = None
    body_close: int | None = None
    html_close: int | None = None
    tail_start: int | None = None  # where an unterminated comment/tag/raw text began
    tracked: int = 0  # links tracked so far
    untracked: int = 0  # links past plan.max_links_per_part, left as they were
    images: int = 0  # <img> tags outside comments, as a filter's HTML parser counts them

    def run(self) -> None:
        """Walk the source once; each branch returns the position after its token."""
        source, pos, end = self.source, 0, len(self.source)
        links = self.plan.clicks
        skip = (SKIP_TO_LINK if links else SKIP).match
        while pos < end:
            if self.anchor is None:
                match = skip(source, pos)  # always matches, perhaps empty
                if match is None:  # pragma: no cover - the pattern matches the empty string
                    break
                link = match.start(1) if links else -1
                skipped = match.end() if link < 0 else link
                if not self.seen_tag:
                    self.seen_tag = source.find("<", pos, skipped) >= 0
                if link >= 0 and self.whole_link(match):
                    pos = match.end()
                    continue
                pos = skipped
                if pos >= end:
                    break
            lt = source.find("<", pos)
            if lt < 0:
                self.add_text(pos, end)
                break
            self.add_text(pos, lt)
            pos = self.markup(lt)
        self.finish_anchor()

    def whole_link(self, match: re.Match[str]) -> bool:
        """A whole <a href="...">text</a> at once; False leaves it to the general path.

        The same outcome as link_tag then finish_anchor, in fewer steps: this is
        the commonest shape of a link in mail, so it sets the pace.
        """
        url, others, text = match.group(2, 3, 4)
        if others and "track" in others.lower():
            return False  # perhaps an opt-out attribute (every one says "track")
        self.seen_tag = True
        if "&" in url:
            url = decode_attribute_value(url)
        if url[:1] <= " " or url[-1:] <= " " or "\t" in url or "\n" in url or "\r" in url:
            url = clean_url(url)
        if not self.wants(url):
            return True
        if self.plan.skip_bare_url_links and len(text) <= MAX_LINK_TEXT:
            shown = html_lib.unescape(text) if "&" in text else text
            # a URL holds no space: most link text is told from one without the full test
            if " " not in shown.strip() and is_bare_url_text(shown):
                return True
        self.track_value(match.start(2) - 1, match.end(2) + 1, '"', url)
        return True

    def add_text(self, start: int, end: int) -> None:
        anchor = self.anchor
        if anchor is not None and start < end and anchor.text_len <= MAX_LINK_TEXT:
            chunk = self.source[start : min(end, start + MAX_LINK_TEXT + 1)]
            anchor.text.append(chunk)
            anchor.text_len += len(chunk)

    def unterminated(self, start: int) -> int:
        """The rest of the input belongs to this construct; the scan ends here."""
        self.tail_start = start
        return len(self.source)

    def markup(self, lt: int) -> int:
        """Dispatch on what follows '<', as the HTML tokenizer's tag-open state does."""
        source = self.source
        nxt = source[lt + 1 : lt + 2]
        if _is_letter(nxt) or (nxt == "/" and _is_letter(source[lt + 2 : lt + 3])):
            return self.tag(lt)
        if source.startswith("<!--", lt):
            return self.comment(lt)
        if source.startswith("<![CDATA[", lt):
            close = source.find("]]>", lt + 9)
            return close + 3 if close >= 0 else self.unterminated(lt)
        if nxt in ("!", "?") or (nxt == "/" and source[lt + 2 : lt + 3] not in ("", ">")):
            return self.bogus_comment(lt)
        if source.startswith("</>", lt):
            return lt + 3
        self.add_text(lt, lt + 1)
        return lt + 1

    def bogus_comment(self, lt: int) -> int:
        """<!doctype>, <![endif]>, <?xml?>: up to the next '>'."""
        close = self.source.find(">", lt + 2)
        if close < 0:
            return self.unterminated(lt)
        head = self.source[lt + 2 : lt + 9].lower()
        if head.startswith("[endif]"):
            self.in_conditional = False
        elif head == "doctype" and not self.seen_tag and self.doctype_end is None:
            self.doctype_end = close + 1
        return close + 1

    def comment(self, lt: int) -> int:
        """Skip a comment; an Outlook conditional comment's content is scanned as HTML."""
        source = self.source
        if source.startswith(">", lt + 4) or source.startswith("->", lt + 4):
            return lt + 5 if source[lt + 4] == ">" else lt + 6
        opener = CC_OPEN.match(source, lt)
        if opener is not None:
            self.in_conditional = True
            return opener.end()
        close = COMMENT_END.search(source, lt + 4)
        if close is None:
            return self.unterminated(lt)
        if source[lt + 4 : lt + 13].lower() == "<![endif]":
            self.in_conditional = False
        return close.end()

    def tag(self, lt: int) -> int:
        match = TAG.match(self.source, lt)
        if match is None or match.group(4) is None:
            return self.unterminated(lt)
        name = match.group(2).lower()
        if match.group(1):
            self.end_tag(name, lt)
            return match.end()
        self.seen_tag = True
        if name == "img":
            self.images += not self.in_conditional  # a conditional comment is a comment to filters
        elif name in _LINK_TAGS or (name.startswith("v:") and self.in_conditional):
            self.link_tag(name, match.start(3), match.end(3))
        elif name == "body" and self.body_open_end is None and not self.in_conditional:
            self.body_open_end = match.end()
        elif name == "html" and self.html_open_end is None and not self.in_conditional:
            self.html_open_end = match.end()
        elif name in _RAW_TEXT:
            return self.raw_text(name, match.end(), lt)
        elif name == "plaintext":
            return self.unterminated(lt)
        return match.end()

    def end_tag(self, name: str, lt: int) -> None:
        if name == "a":
            self.finish_anchor()
        elif self.in_conditional:
            return
        elif name == "body":
            self.body_close = lt
        elif name == "html":
            self.html_close = lt

    def raw_text(self, name: str, content_start: int, lt: int) -> int:
        """Skip to the matching end tag; nothing inside script/style/textarea is a link."""
        closer = re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE)
        found = closer.search(self.source, content_start)
        return found.start() if found is not None else self.unterminated(lt)

    def link_tag(self, name: str, attrs_start: int, attrs_end: int) -> None:
        """Rewrite the first href of <a>/<area>/VML, or drop opt-out attributes instead."""
        if not self.plan.clicks:
            return
        if name == "a":
            self.finish_anchor()
        href: re.Match[str] | None = None
        opted_out = False
        for attr in ATTR.finditer(self.source, attrs_start, attrs_end):
            attr_name = attr.group(1).lower()
            if attr_name == "href":
                href = href or attr
            elif attr_name in OPT_OUT_NAMES and is_opt_out_attribute(
                attr_name, _unquote(attr.group(2))
            ):
                self.remove_attribute(attr, attrs_start)
                opted_out = True
        if href is None or href.group(2) is None or opted_out:
            return
        url = clean_url(decode_attribute_value(_unquote(href.group(2)) or ""))
        if not self.wants(url):
            return
        quote = href.group(2)[:1] if href.group(2)[:1] in ("'", '"') else ""
        anchor = _Anchor(href.start(2), href.end(2), quote, url)
        if name == "a" and self.plan.skip_bare_url_links:
            self.anchor = anchor
        else:
            self.track(anchor)

    def wants(self, url: str) -> bool:
        plan = self.plan
        return (
            is_trackable_url(url)
            and not (plan.own_base_urls and is_own_url(url, plan.own_base_urls))
            and not (plan.exclude_links and is_excluded(url, plan.exclude_links))
        )

    def remove_attribute(self, attr: re.Match[str], attrs_start: int) -> None:
        """Drop the attribute with its leading whitespace, keeping a space before a '/'."""
        start = attr.start()
        while start > attrs_start and self.source[start - 1] in _WS:
            start -= 1
        following = self.source[attr.end() : attr.end() + 1]
        self.edits.append((start, attr.end(), " " if following == "/" else ""))

    def track(self, anchor: _Anchor) -> None:
        self.track_value(anchor.value_start, anchor.value_end, anchor.quote, anchor.url)

    def track_value(self, start: int, end: int, quote: str, url: str) -> None:
        """Replace source[start:end], an attribute value, by url's tracking URL."""
        if self.tracked >= self.plan.max_links_per_part:
            self.untracked += 1
            return
        self.tracked += 1
        quote = quote or '"'
        value = quote + escape_attribute(self.track_link(url), quote) + quote
        self.edits.append((start, end, value))

    def finish_anchor(self) -> None:
        """At </a>, the next <a> or the end: track unless the visible text is a URL."""
        anchor, self.anchor = self.anchor, None
        if anchor is None:
            return
        text = "".join(anchor.text)
        text = html_lib.unescape(text) if "&" in text else text
        if anchor.text_len > MAX_LINK_TEXT or not is_bare_url_text(text):
            self.track(anchor)

    def pixel_position(self, pixel_at: Literal["top", "bottom"]) -> int:
        """Where the pixel goes: never inside a comment, script or conditional comment."""
        if pixel_at == "top":
            for candidate in (self.body_open_end, self.html_open_end, self.doctype_end):
                if candidate is not None:
                    return candidate
            return 1 if self.source.startswith("\ufeff") else 0
        for candidate in (self.body_close, self.html_close, self.tail_start):
            if candidate is not None:
                return candidate
        # Before the final line breaks: the part (and so the message) keeps ending in one.
        return len(self.source.rstrip("\r\n"))


_SPAN = itemgetter(0, 1)


def _is_letter(char: str) -> bool:
    return char.isascii() and char.isalpha()


def _unquote(value: str | None) -> str | None:
    if value is None or value[:1] not in ("'", '"'):
        return value
    return value[1:-1] if len(value) > 1 and value[-1] == value[0] else value[1:]


PixelAt = Literal["top", "bottom"]
TrackLink = Callable[[str], str]  # an original URL -> its tracking URL


@dataclass(frozen=True)
class ScannedPart:
    """What one scan found: the edits (pixel included), links left untracked, own images."""

    edits: list[tuple[int, int, str]]
    untracked: int
    images: int


def scan_part(
    html: str, plan: RewritePlan, pixel_at: PixelAt, track_link: TrackLink
) -> ScannedPart:
    """One HTML part scanned: its edits, links left untracked, and its own <img> tags.

    The edits are (start, end, replacement) spans, sorted and disjoint: tracked
    hrefs, opt-out attributes dropped, the plan's pixel and honeypot; the caller
    re-encodes only the bytes around them (relay.rewrite). track_link maps
    an original (entity-decoded, trimmed) URL to its tracking URL; it is called
    once per tracked link, in document order except that an <a> is resolved at
    its end (its visible text decides skip_bare_url_links).
    """
    scanner = _Scanner(html, plan, track_link)
    scanner.run()
    snippet = tracking_snippet(plan)
    if snippet:
        position = scanner.pixel_position(pixel_at)
        scanner.edits.append((position, position, snippet))
    scanner.edits.sort(key=_SPAN)
    return ScannedPart(scanner.edits, scanner.untracked, scanner.images)
