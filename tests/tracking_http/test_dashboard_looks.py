"""What the pages show besides the numbers: the feed's last events, the charts' axes."""

from __future__ import annotations

import re
import time
from typing import Any

from relay.core.models import Event, EventBucket
from relay.core.store import Store
from tracking_http.admin.charts import build_chart, hbars, nice_peak
from tracking_http.app import create_admin_app

from .test_dashboard import BOB, admin_config, copy_ids, logged_in, spool


def test_charts_have_axes_with_values() -> None:
    assert [nice_peak(n) for n in (0, 1, 3, 7, 10, 11, 240, 501)] == [
        1,
        1,
        5,
        10,
        10,
        20,
        500,
        1000,
    ]
    start = 1_700_000_000.0 // 86400 * 86400
    buckets = [
        EventBucket(start + 86400, "open", "human", 7),
        EventBucket(start, "click", "bot", 2),
    ]
    chart = build_chart(buckets, start, 86400.0, 14)
    assert [t.text for t in chart.ticks] == ["0", "5", "10"]
    assert chart.ticks[0].y == chart.bottom  # zero on the time axis
    (bar,) = chart.bars
    assert bar.x >= chart.left and bar.title.endswith(": 7 human opens")
    assert chart.human == {"open": 7, "click": 0} and chart.machine == {"open": 0, "click": 2}
    assert chart.unit == "day" and len(chart.labels) <= 8
    assert [(b.label, b.count, b.percent) for b in hbars([("Apple Mail", 4), ("Outlook", 1)])] == [
        ("Apple Mail", 4, 100.0),
        ("Outlook", 1, 25.0),
    ]


async def test_the_feed_shows_the_last_50_events_on_load(store: Store, serve: Any) -> None:
    message_id = await spool(store, "Busy")
    ids = await copy_ids(store, message_id)
    now = time.time()
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/128.0 " + "x" * 300
    for n in range(60):
        await store.record_event(
            Event("open", ids[BOB], message_id, BOB, now + n, f"198.51.100.{n}", agent)
        )
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    for path in ("/", "/feed"):
        page = await (await client.get(path)).text()
        items = re.findall(r'<li class="feed-item kind-open" title="([^"]*)">', page)
        assert len(items) == 50, path
        assert items[0] == agent  # the whole user agent, however long
        last = await store.last_event_id()
        assert f'data-stream="/api/events/stream?last_event_id={last}"' in page
    assert "svg" in await (await client.get("/charts")).text()
