"""The formats of the admin listener's path and query parameters, in one place.

Each pattern here is both what the handlers check and what the OpenAPI
document (tracking_http.admin.openapi) declares, so a value the document
calls valid is never refused as malformed, and a value it calls invalid is
never taken: the document is the contract API clients (and Schemathesis)
hold the server to.
"""

from __future__ import annotations

import re

MAX_ADDRESS = 320
MAX_MESSAGE_ID = 64
MAX_ID_DIGITS = 18  # event ids: below 10**18
MAX_EVENT_ID = 10**MAX_ID_DIGITS - 1

# A message id as the store makes them: 12 hex digits of milliseconds, 8 random.
MESSAGE_ID = r"^[0-9a-f]{1,64}$"
# A recipient address: something, an @, a domain: no @ in either, no space or control
# character (spelled out: Python's \s takes \x1c-\x1f, JavaScript's, which OpenAPI
# patterns follow, does not).
ADDRESS = r"^[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+$"
# The page after a message: the id of the previous page's last message.
CURSOR = MESSAGE_ID
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

_MESSAGE_ID = re.compile(MESSAGE_ID)
_ADDRESS = re.compile(ADDRESS)
_DATE = re.compile(DATE)


def is_message_id(value: str) -> bool:
    return _MESSAGE_ID.search(value) is not None and "\n" not in value


def is_address(value: str) -> bool:
    return len(value) <= MAX_ADDRESS and _ADDRESS.search(value) is not None and "\n" not in value


def is_date(value: str) -> bool:
    return _DATE.search(value) is not None and "\n" not in value


def is_digits(value: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is true, but ``int("²")`` raises."""
    return value.isascii() and value.isdigit()
