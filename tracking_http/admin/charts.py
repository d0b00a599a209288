"""Opens and clicks over time as plain SVG geometry, drawn by the templates.

Server-side, so the dashboard needs no chart library and no script: the
template turns these numbers into ``<rect>`` elements (autoescaped like the
rest of the page). Human events are the bars; the machine ones (proxy, bot,
prefetch, self) are counted apart in the legend, as reports do (SPEC 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from relay.core.models import EventBucket

WIDTH = 960
HEIGHT = 220
AXIS = 20  # room for the time labels under the bars
LEFT = 48  # room for the count labels left of the bars
TOP = 10  # room for the top tick's label
MAX_LABELS = 8
MAX_BAR = 24.0  # a few buckets still look like bars, not walls
SERIES = ("open", "click")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # "open" or "click": the CSS class
    title: str  # the tooltip: when and how many


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Tick:
    """A count on the vertical axis, with its grid line at y."""

    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]
    human: dict[str, int]  # kind -> human events in the window
    machine: dict[str, int]  # kind -> every other class in the window
    peak: int
    ticks: tuple[Tick, ...] = ()
    left: int = LEFT  # where the plot starts (the vertical axis)
    bottom: int = HEIGHT - AXIS  # where the bars stand (the time axis)
    unit: str = "day"  # what one pair of bars counts: "day" or "hour"


def bucket_label(start: float, width: float) -> str:
    when = datetime.fromtimestamp(start, UTC)
    return when.strftime("%m-%d") if width >= 86400 else when.strftime("%m-%d %H:%M")


def nice_peak(peak: int) -> int:
    """The axis's top: the peak rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= peak:
                return top * step
        top *= 10


def ticks_for(top: int, plot: float) -> tuple[Tick, ...]:
    """0, half way (when a whole number) and the top, each with its height in the plot."""
    values = sorted({0, top // 2 if top % 2 == 0 else 0, top})
    return tuple(Tick(round(TOP + plot - plot * v / top, 1), str(v)) for v in values)


def build_chart(buckets: list[EventBucket], start: float, width: float, count: int) -> Chart:
    """``count`` buckets of ``width`` seconds from ``start``; two bars per bucket."""
    human = {kind: [0] * count for kind in SERIES}
    totals = {kind: 0 for kind in SERIES}
    machine = {kind: 0 for kind in SERIES}
    for b in buckets:
        index = round((b.start - start) / width)
        if b.kind not in human or not 0 <= index < count:
            continue
        if b.klass == "human":
            human[b.kind][index] += b.count
            totals[b.kind] += b.count
        else:
            machine[b.kind] += b.count
    peak = max([1, *human["open"], *human["click"]])
    top = nice_peak(peak)
    slot = (WIDTH - LEFT) / max(count, 1)
    bar_width = min(max(slot / 2 - 1, 0.5), MAX_BAR)
    plot = HEIGHT - AXIS - TOP
    bars: list[Bar] = []
    for i in range(count):
        label = bucket_label(start + i * width, width)
        for offset, kind in enumerate(SERIES):
            n = human[kind][i]
            if n:
                h = max(plot * n / top, 1.0)
                x = LEFT + i * slot + offset * (bar_width + 1)
                title = f"{label}: {n} human {kind}{'s' if n != 1 else ''}"
                bars.append(Bar(x, TOP + plot - h, bar_width, h, kind, title))
    step = max(1, -(-count // MAX_LABELS))
    labels = tuple(
        Label(round(LEFT + i * slot, 1), bucket_label(start + i * width, width))
        for i in range(0, count, step)
    )
    unit = "day" if width >= 86400 else "hour"
    if width not in (3600.0, 86400.0):
        unit = f"{int(width // 3600)} hours" if width < 86400 else f"{int(width // 86400)} days"
    return Chart(
        WIDTH,
        HEIGHT,
        tuple(bars),
        labels,
        totals,
        machine,
        peak,
        ticks_for(top, plot),
        LEFT,
        HEIGHT - AXIS,
        unit,
    )


@dataclass(frozen=True)
class HBar:
    """One row of a horizontal bar chart: a label, its count and the bar's length (0-100 %)."""

    label: str
    count: int
    percent: float


def hbars(rows: list[tuple[str, int]]) -> list[HBar]:
    """Rows as bars scaled to the largest (drawn with CSS widths, no script)."""
    peak = max([1, *(n for _, n in rows)])
    return [HBar(label, n, round(100.0 * n / peak, 1)) for label, n in rows]


def window(first: float, now: float, max_buckets: int = 48) -> tuple[float, float, int]:
    """A bucket width (whole hours or days) and count covering [first, now]."""
    span = max(now - first, 3600.0)
    hours = -(-span // 3600)
    per_bucket = -(-hours // max_buckets)
    if per_bucket >= 24:
        per_bucket = -(-per_bucket // 24) * 24
    width = per_bucket * 3600.0
    start = first - first % width if per_bucket >= 24 else first - first % 3600
    count = int(-(-(now - start) // width)) or 1
    return start, width, min(count, max_buckets + 1)
