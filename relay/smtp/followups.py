"""What a spooled message means for tracking: its copies, and the replies it records.

Copies (SPEC 3): one per recipient, or one shared copy whose events belong to
"someone" (per_recipient = false). In privacy mode only recipients with a
legal basis get their own copy; the others share one.

Replies (SPEC 7): a message naming a tracked message in In-Reply-To or
References and going to one of its recipients records a reply (and an
inferred open) for that recipient. Recording it never costs the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from relay.core.config import Config
from relay.core.models import CopySpec, TrackingDecision
from relay.core.store import Store
from relay.policy import address_matches

log = logging.getLogger("relay.smtp")


def copy_specs(config: Config, decision: TrackingDecision, rcpts: Sequence[str]) -> list[CopySpec]:
    """Own copies for the attributable recipients, one shared copy for the rest."""
    if not decision.per_recipient:
        return [CopySpec(None, tuple(rcpts))]
    privacy = config.tracking.privacy
    if not privacy.enabled:
        return [CopySpec(r, (r,)) for r in rcpts]
    own = [r for r in rcpts if any(address_matches(p, r) for p in privacy.legal_basis)]
    others = tuple(r for r in rcpts if r not in own)
    return [CopySpec(r, (r,)) for r in own] + ([CopySpec(None, others)] if others else [])


async def record_replies(store: Store, referenced: Sequence[str], rcpts: Sequence[str]) -> int:
    """Reply events for the tracked messages this one answers; logged, never raised."""
    if not referenced:
        return 0
    try:
        stored = await store.record_replies(referenced, rcpts, time.time())
    except Exception:
        log.exception("could not record replies")
        return 0
    replies = sum(1 for event in stored if event.kind == "reply")
    if replies:
        log.info("recorded %d repl%s", replies, "y" if replies == 1 else "ies")
    return replies
