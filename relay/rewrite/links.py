"""Which links are tracked (SPEC section 5): pure predicates on decoded URLs and attributes.

Kept apart from the HTML scanner so each rule can be tested on its own and
the scanner only knows *where* a link is, never *whether* to track it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from html.entities import html5
from types import MappingProxyType

# A char ref as the HTML tokenizer sees it; named refs take the whole alnum run
# so the "followed by alnum or '='" attribute rule below can be applied.
_CHARREF = re.compile(r"&(?:#[xX][0-9a-fA-F]++;?|#[0-9]++;?|[A-Za-z][A-Za-z0-9]*+;?)")
# WHATWG URL parsing drops leading/trailing C0 controls and spaces, and every tab/newline.
_URL_TRIM = "".join(chr(c) for c in range(0x21))
_URL_TABS = str.maketrans("", "", "\t\n\r")
# http(s) with a non-empty host: "http://" alone (a template placeholder) is not a link.
_TRACKABLE = re.compile(r"https?://[^/?#\\\s]", re.IGNORECASE)
_LABEL = r"(?:[^\W_](?:[\w-]{0,62}[^\W_])?)"
_BARE_URL = re.compile(
    rf"(?:(?:https?|ftp)://\S+|(?:www\.)?{_LABEL}(?:\.{_LABEL})*\.(?:[^\W\d_]{{2,63}}|xn--[\w-]+)"
    r"(?::\d{1,5})?(?:[/?#]\S*)?)",
    re.IGNORECASE,
)
MAX_LINK_TEXT = 4096  # longer visible text is never "just a URL"

# Presence-only opt-out attributes used by hosted senders; values are ignored.
_OPT_OUT_NAMES = frozenset(
    {"data-notrack", "data-pm-no-track", "ses:no-track", "mc:disable-tracking"}
)
# Opt-out attributes that count only with a given value (compared case-insensitively).
_OPT_OUT_VALUES = MappingProxyType({"clicktracking": "off", "data-msys-clicktrack": "0"})
# Every lower-cased name that can opt out: the scanner's cheap first test.
OPT_OUT_NAMES = _OPT_OUT_NAMES | _OPT_OUT_VALUES.keys()


def decode_attribute_value(raw: str) -> str:
    """Decode character references the way the HTML tokenizer does inside an attribute.

    Unlike html.unescape, a named reference without ';' followed by '=' or an
    alphanumeric stays literal, so "?a=1&copy=2" keeps its query parameter.
    """

    if "&" not in raw:
        return raw
    if "&" not in raw.replace("&amp;", ""):
        return raw.replace("&amp;", "&")  # the usual case: only &amp;, decoded left to right

    def replace(match: re.Match[str]) -> str:
        ref = match.group()
        if ref.endswith(";") or ref[1] == "#":
            return html.unescape(ref)
        name = ref[1:]
        end = match.end()
        if name in html5 and not raw.startswith("=", end):
            return html5[name]
        return ref

    return _CHARREF.sub(replace, raw)


def clean_url(decoded: str) -> str:
    """The URL a browser would follow: trimmed, with tabs and newlines removed."""
    url = decoded.strip(_URL_TRIM)
    return url.translate(_URL_TABS) if "\t" in url or "\n" in url or "\r" in url else url


def is_trackable_url(url: str) -> bool:
    """True for absolute http(s) URLs with a host.

    mailto:, tel:, javascript:, data:, fragments, relative and protocol-relative
    ("//host", whose scheme depends on where the mail is viewed) are left alone.
    """
    return _TRACKABLE.match(url) is not None


def is_own_url(url: str, own_base_urls: Iterable[str]) -> bool:
    """True when url already points at one of our tracking bases (never wrap twice)."""
    lowered = url.lower()
    for base in own_base_urls:
        prefix = base.lower().rstrip("/")
        if prefix and lowered.startswith(prefix):
            rest = lowered[len(prefix) :]
            if not rest or rest[0] in "/?#":
                return True
    return False


def is_excluded(url: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    """True when any exclude_links regex finds a match anywhere in the URL."""
    return any(pattern.search(url) for pattern in patterns)


def is_bare_url_text(text: str) -> bool:
    """True when a link's visible text is itself a URL or bare domain.

    Such links are left untracked: a reader who sees the address expects to go
    straight there, and a tracking domain in the status bar looks like phishing.
    """
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_LINK_TEXT or len(stripped.split(None, 1)) > 1:
        return False  # a URL holds no whitespace: most link text fails here cheaply
    return _BARE_URL.fullmatch(stripped) is not None


def is_opt_out_attribute(name: str, value: str | None) -> bool:
    """True for a sender's "do not track this link" attribute (removed before relaying)."""
    lowered = name.lower()
    if lowered in _OPT_OUT_NAMES:
        return True
    wanted = _OPT_OUT_VALUES.get(lowered)
    if wanted is None or value is None:
        return False
    return decode_attribute_value(value).strip().lower() == wanted
