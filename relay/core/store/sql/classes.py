"""Event classes as SQL: what counts as human, as a machine, as inferred. Written once.

Every query that labels or filters events by class uses these fragments, so
"an inferred event is a human one" has one definition. ``inferred`` is an
integer column (0 or 1) on both engines, compared explicitly: PostgreSQL has
no integer truthiness.
"""

from __future__ import annotations

INFERRED = "inferred != 0"
NOT_INFERRED = "inferred = 0"
# The class an event is counted in: an inferred event is a human one, whatever class
# it was recorded with.
COUNTED_CLASS = f"CASE WHEN {INFERRED} THEN 'human' ELSE klass END"
HUMAN = f"(klass = 'human' OR {INFERRED})"
HUMAN_OPEN = f"kind = 'open' AND {HUMAN}"
# Bot, proxy and prefetch fetches are machines'; an inferred event is a person's.
MACHINE = f"klass IN ('bot', 'proxy', 'prefetch') AND {NOT_INFERRED}"
