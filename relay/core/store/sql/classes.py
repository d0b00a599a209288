"""Event classes as SQL: what counts as human, as a machine, as inferred. Written once.

Every query that labels or filters events by class uses these fragments, so
"an inferred event is a human one" has one definition (relay.core.models says
which classes are machines' for the code outside SQL). ``inferred`` is an
integer column (0 or 1) on both engines, compared explicitly: PostgreSQL has
no integer truthiness. A query that names its tables (``e.klass``) asks ``on``.

The hourly rollup's triggers count by COUNTED_CLASS, and a shipped schema step
is never edited: SQLite's step 4 spells it out, PostgreSQL's baseline is built
from it. Changing it takes a new step in both lists that replaces those
triggers (and recounts event_hours).
"""

from __future__ import annotations

import re

from relay.core.models import MACHINE_CLASSES

INFERRED = "inferred != 0"
NOT_INFERRED = "inferred = 0"
# The class an event is counted in: an inferred event is a human one, whatever class
# it was recorded with.
COUNTED_CLASS = f"CASE WHEN {INFERRED} THEN 'human' ELSE klass END"
HUMAN = f"(klass = 'human' OR {INFERRED})"
HUMAN_OPEN = f"kind = 'open' AND {HUMAN}"
# A person's own fetch, with the agent and address it came from (not inferred).
RECORDED_HUMAN = f"klass = 'human' AND {NOT_INFERRED}"
# A privacy proxy fetched the pixel: "opened, maybe".
PROXY = f"klass = 'proxy' AND {NOT_INFERRED}"
# Fetches with the agent of whoever opened: a person's own, or a privacy proxy's.
READER_AGENT = f"klass IN ('human', 'proxy') AND {NOT_INFERRED}"
# Bot, proxy and prefetch fetches are machines'; an inferred event is a person's.
_MACHINES = ", ".join(f"'{klass}'" for klass in MACHINE_CLASSES)
MACHINE = f"klass IN ({_MACHINES}) AND {NOT_INFERRED}"

_COLUMNS = re.compile(r"\b(klass|inferred)\b")


def on(table: str, fragment: str) -> str:
    """A fragment for one table of a query that names them: ``on("e", PROXY)``."""
    return _COLUMNS.sub(rf"{table}.\1", fragment)
