"""A message's tags, read from X-Tag and the tag headers of the hosted services (SPEC 8).

Senders that move from a hosted service keep the headers they already set:

- ``X-Tag`` (ours) and Mandrill's ``X-MC-Tags``: comma-separated, repeatable;
- Mailgun's ``X-Mailgun-Tag``: one tag per header, repeatable;
- Postmark's ``X-PM-Tag``: one tag;
- Amazon SES's ``X-SES-MESSAGE-TAGS``: comma-separated ``name=value`` pairs. SES uses
  them as dimensions (a name such as ``campaign`` and its value), and allows only
  ASCII letters, digits, ``_`` and ``-`` in either ("Specify your configuration set
  when you send email", Amazon SES Developer Guide,
  https://docs.aws.amazon.com/ses/latest/dg/event-publishing-send-email.html), so
  each pair becomes the tag ``name:value``: the value alone would mix up
  ``campaign=spring`` and ``variant=spring``, and ``:`` cannot occur in either part;
- SendGrid's ``X-SMTPAPI``: a JSON object whose ``category`` is a string or a list.

Tags are trimmed (inner runs of white space become one space), at most MAX_TAG_CHARS
long, compared case-insensitively (the first spelling wins), and at most MAX_TAGS per
message. Bad input is skipped: a tag never costs a message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from email.header import decode_header, make_header

from relay.core.config import SmtpConfig
from relay.core.models import MAX_TAG_CHARS, MAX_TAGS

X_TAG = "x-tag"
# lower-case names, in the order their tags are taken
TAG_HEADERS = ("x-tag", "x-mc-tags", "x-mailgun-tag", "x-pm-tag", "x-ses-message-tags", "x-smtpapi")
MAX_VALUE_CHARS = 16 * 1024  # of one header worth reading
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tag_header_names(config: SmtpConfig) -> tuple[str, ...]:
    """The tag headers to strip before relaying: all of them, or only ours when the
    upstream is itself a tracking service that reads its own (pass_through_tracking_headers)."""
    return (X_TAG,) if config.pass_through_tracking_headers else TAG_HEADERS


def message_tags(headers: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The tags of a message from its top-level headers (lower-case name -> values)."""
    found: dict[str, str] = {}
    for name in TAG_HEADERS:
        for value in headers.get(name, ()):
            for tag in _split(name, _decoded(value[:MAX_VALUE_CHARS])):
                text = " ".join(_CONTROL.sub(" ", tag).split())[:MAX_TAG_CHARS].strip()
                if text and text.casefold() not in found and len(found) < MAX_TAGS:
                    found[text.casefold()] = text
    return tuple(found.values())


def _decoded(value: str) -> str:
    """RFC 2047 encoded words decoded, like the Subject; the value as it is otherwise."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _split(name: str, value: str) -> Iterator[str]:
    if name in ("x-mailgun-tag", "x-pm-tag"):
        yield value
    elif name == "x-ses-message-tags":
        for pair in value.split(","):
            key, sep, tag_value = pair.partition("=")
            if sep and key.strip() and tag_value.strip():
                yield f"{key.strip()}:{tag_value.strip()}"
    elif name == "x-smtpapi":
        yield from _sendgrid_categories(value)
    else:
        yield from value.split(",")


def _sendgrid_categories(value: str) -> Iterator[str]:
    try:
        data = json.loads(value)
    except (ValueError, RecursionError):
        return
    category = data.get("category") if isinstance(data, dict) else None
    if isinstance(category, str):
        yield category
    elif isinstance(category, list):
        yield from (item for item in category if isinstance(item, str))
