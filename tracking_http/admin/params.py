"""The formats of the admin listener's path and query parameters, in one place.

Each pattern here is both what the handlers check and what the OpenAPI
document (tracking_http.admin.openapi) declares, so a value the document
calls valid is never refused as malformed, and a value it calls invalid is
never taken: the document is the contract API clients (and Schemathesis)
hold the server to.
"""

from __future__ import annotations

import calendar
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


# A point in time for since/until: unix seconds, or an ISO 8601 date or date and time
# (UTC unless it says its offset). Every value it matches is taken (a day past the
# month's end rolls over, as calendar.timegm does), so the document and the handler agree.
TIME = (
    r"^([0-9]{1,11}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3]):?[0-5][0-9])?)?)$"
)
MAX_TAG = 100
STATES = ("queued", "deferred", "delivered", "bounced")
_TIME = re.compile(TIME)


def parse_time(value: str) -> float | None:
    """Unix time of a since/until value; None when it is not one (see TIME)."""
    match = _TIME.search(value)
    if match is None or "\n" in value:
        return None
    if value.isdigit():
        return float(value)
    date, _, rest = value.replace(" ", "T").partition("T")
    year, month, day = (int(part) for part in date.split("-"))
    offset = 0
    zone = re.search(r"(Z|[+-][0-9]{2}:?[0-9]{2})$", rest)
    if zone is not None:
        if zone.group(1) != "Z":
            sign = -1 if zone.group(1)[0] == "-" else 1
            digits = zone.group(1)[1:].replace(":", "")
            offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        rest = rest[: zone.start()]
    clock = [float(part) for part in rest.split(":")] if rest else []
    hours, minutes, seconds = (*clock, 0.0, 0.0, 0.0)[:3]
    whole = calendar.timegm((year, month, day, int(hours), int(minutes), 0, 0, 0, 0))
    return whole + seconds - offset
