"""The search parameters of GET /api/messages (SPEC 8), checked and turned into a
MessageFilter: q (words of the subject, or addresses), recipient, tag, state, since
and until. Each format is the OpenAPI document's (tracking_http.admin.params)."""

from __future__ import annotations

from collections.abc import Mapping

from relay.core.models import MessageFilter
from tracking_http.admin.params import MAX_ADDRESS, MAX_TAG, STATES, is_address, parse_time

MAX_Q = 200


class BadSearch(ValueError):
    """A search parameter the API refuses; the message says which and why."""


def time_range(query: Mapping[str, str]) -> tuple[float | None, float | None]:
    """since and until (unix seconds or ISO 8601), each optional; BadSearch otherwise."""
    bounds: list[float | None] = []
    for name in ("since", "until"):
        raw = query.get(name)
        value = None if raw is None else parse_time(raw)
        if raw is not None and value is None:
            raise BadSearch(f"{name} must be unix seconds or an ISO 8601 date or date and time")
        bounds.append(value)
    return bounds[0], bounds[1]


def search_filter(query: Mapping[str, str]) -> MessageFilter:
    """GET /api/messages's q, recipient, tag, state, since and until as a MessageFilter."""
    since, until = time_range(query)
    q = query.get("q")
    if q is not None and len(q) > MAX_Q:
        raise BadSearch(f"q is longer than {MAX_Q} characters")
    recipient = query.get("recipient")
    if recipient is not None and not is_address(recipient):
        raise BadSearch(f"recipient must be an address (at most {MAX_ADDRESS} characters)")
    tag = query.get("tag")
    if tag is not None and not 1 <= len(tag) <= MAX_TAG:
        raise BadSearch(f"tag must be 1 to {MAX_TAG} characters")
    state = query.get("state")
    if state is not None and state not in STATES:
        raise BadSearch(f"state must be one of {', '.join(STATES)}")
    return MessageFilter(
        since=since, until=until, q=q or None, recipient=recipient, tag=tag, state=state
    )
