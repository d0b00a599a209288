"""What a logged message looked like: its HTML in a sandbox, its text, headers and source.

Only a logged copy (policy ``log_copy`` or ``X-Track-Log: yes``) keeps its
raw bytes past delivery, and only a logged copy is shown (as the raw API:
keeping a copy is a decision). Its HTML is served by a route of its own
(``/messages/{id}/preview``) into an ``<iframe sandbox>`` with no
allow-* flag, and that answer's Content-Security-Policy forbids every
remote load, every script, every form and every plugin: a preview can
never fetch our pixel, follow a tracked link by itself, or wake anyone
else's tracker. ``PREVIEW_CSP`` is the whole policy; the page opened
directly (not in the frame) is sandboxed by the CSP's own ``sandbox``.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage

PREVIEW_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none';"
    " base-uri 'none'; frame-ancestors 'self'; sandbox"
)
PREVIEW_ROUTE = "/messages/{id}/preview"
MAX_SOURCE = 256 * 1024  # characters of the source shown on the page; the rest by download
MAX_PART = 1024 * 1024  # characters of an HTML or text part
# A meta refresh would be a navigation, which no CSP directive of ours stops: defused.
_META_EQUIV = re.compile(r"(<meta\b[^>]*?)\bhttp-equiv\b", re.IGNORECASE)
_DOCTYPE = re.compile(r"^\s*<!doctype[^>]*>", re.IGNORECASE)
# Links open nowhere: a target=_blank link needs allow-popups, which the sandbox lacks.
BASE_TARGET = '<base target="_blank">'


@dataclass(frozen=True)
class Preview:
    html: str | None  # the HTML part, ready for the sandboxed frame; None without one
    text: str | None  # the plain text part
    headers: tuple[tuple[str, str], ...]
    source: str  # the raw message as text, clipped to MAX_SOURCE
    clipped: bool  # the source is longer than shown


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def part_text(message: EmailMessage, subtype: str) -> str | None:
    """The decoded body of the message's preferred text/<subtype> part, or None."""
    try:
        part = message.get_body((subtype,))
        if part is None:
            return None
        content = part.get_content()
    except (LookupError, ValueError, AttributeError):  # unknown charset, broken part
        return None
    return content[:MAX_PART] if isinstance(content, str) else None


def header_list(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    """Every header in order, decoded where it can be, raw where it cannot."""
    headers: list[tuple[str, str]] = []
    for name, value in message.raw_items():
        try:
            text = str(message.policy.header_fetch_parse(name, value))
        except (ValueError, LookupError, IndexError, TypeError, AttributeError):
            text = str(value)
        headers.append((name, text))
    return tuple(headers)


def safe_html(html: str) -> str:
    """The HTML with meta refresh defused and links kept from opening anything."""
    html = _META_EQUIV.sub(r"\1data-defused-http-equiv", html)
    doctype = _DOCTYPE.match(html)
    at = doctype.end() if doctype else 0
    return html[:at] + BASE_TARGET + html[at:]


def build(raw: bytes) -> Preview:
    message = parse(raw)
    html = part_text(message, "html")
    source = raw.decode("utf-8", "replace")
    return Preview(
        html=None if html is None else safe_html(html),
        text=part_text(message, "plain"),
        headers=header_list(message),
        source=source[:MAX_SOURCE],
        clipped=len(source) > MAX_SOURCE,
    )
