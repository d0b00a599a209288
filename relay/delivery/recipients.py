"""Per-recipient outcomes of one transaction: a shared copy's recipients answered apart.

An upstream may refuse some recipients at RCPT (each with its own 4xx or 5xx)
and answer the others at DATA. A copy to one recipient has one outcome; a
shared copy (per_recipient = false, or privacy mode's shared copy) is split by
outcome (the store's record_parts): the delivered are done, the deferred are
retried on the schedule without the others, the bounced get a DSN naming
exactly them, each with its own reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from relay.core.models import DeliveryOutcome

Status = Literal["delivered", "temporary", "permanent"]
# The delivered come first: they keep the copy, whose tokens and links went to them.
ORDER: tuple[Status, ...] = ("delivered", "temporary", "permanent")


@dataclass(frozen=True)
class Answered:
    """Recipients of one copy that share an outcome, and each one's own reply."""

    rcpt_tos: tuple[str, ...]
    outcome: DeliveryOutcome  # its reply: the distinct replies, joined with "; "
    replies: dict[str, str] = field(default_factory=dict)  # only when they differ


def answered_apart(rcpt_tos: Sequence[str], outcome: DeliveryOutcome) -> list[Answered]:
    """The recipients grouped by outcome, in ORDER; one group when all share one."""
    own = {refusal.address: refusal for refusal in outcome.refused}
    by_status: dict[Status, list[tuple[str, str]]] = {}
    for address in rcpt_tos:
        refusal = own.get(address)
        if refusal is not None:
            by_status.setdefault(refusal.status, []).append((address, refusal.reply))
        else:
            by_status.setdefault(outcome.status, []).append((address, outcome.reply))
    groups: list[Answered] = []
    for status in ORDER:
        members = by_status.get(status)
        if not members:
            continue
        replies = dict(members)
        distinct = list(dict.fromkeys(replies.values()))
        queue_id = outcome.queue_id if status == outcome.status else ""
        shared = DeliveryOutcome(status, "; ".join(distinct), queue_id)
        groups.append(
            Answered(tuple(a for a, _ in members), shared, replies if len(distinct) > 1 else {})
        )
    return groups
