"""The messages page's search and rates, the tags pages, and a message's mail clients."""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from relay.core.models import DeliveryOutcome, Event
from relay.core.store import Store
from tracking_http.app import create_admin_app

from .test_dashboard import BOB, admin_config, copy_ids, logged_in, spool

THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0"


async def campaign(store: Store) -> str:
    """A tagged message to Bob and Carol, both delivered; Bob opened (Thunderbird) and
    clicked; plus an untagged message to Dan."""
    message_id = await spool(store, "Spring offer", tags=("spring-2026", "promo"))
    await spool(store, "Invoice 42", rcpts=("dan@example.com",))
    ids = await copy_ids(store, message_id)
    for copy_id in ids.values():
        await store.record_outcome(copy_id, DeliveryOutcome("delivered", "250 ok"), None)
    url = "https://shop.example.com/spring"
    await store.record_links(ids[BOB], [url])
    now = time.time()
    await store.record_event(
        Event("open", ids[BOB], message_id, BOB, now, "198.51.100.7", THUNDERBIRD)
    )
    click = Event("click", ids[BOB], message_id, BOB, now + 1, "198.51.100.7", THUNDERBIRD)
    await store.record_event(dataclasses.replace(click, url=url, link_index=0))
    return message_id


async def test_search_and_rates_on_the_messages_page(store: Store, serve: Any) -> None:
    await campaign(store)
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    page = await (await client.get("/")).text()
    assert 'Opened <span class="th-note">(human, unique)</span>' in page
    row = re.search(r"Spring offer.*?</tr>", page, re.S)
    assert row is not None and "50%" in row.group(0)  # 1 of 2 delivered opened and clicked
    for query, found, missing in (
        ("recipient=dan@example.com", "Invoice 42", "Spring offer"),
        ("q=spring", "Spring offer", "Invoice 42"),
        ("q=carol@example.org", "Spring offer", "Invoice 42"),
        ("tag=PROMO", "Spring offer", "Invoice 42"),
        ("state=queued", "Invoice 42", "Spring offer"),
    ):
        text = await (await client.get(f"/?{query}")).text()
        assert found in text and missing not in text, query
    assert 'href="/tags/spring-2026"' in page
    for bad in ("recipient=nobody", "state=lost", "tag=" + "x" * 101, "q=" + "w" * 201):
        answer = await client.get(f"/?{bad}")
        assert answer.status == 400, bad
    nothing = await (await client.get("/?q=nothing-like-this")).text()
    assert "No messages match this search." in nothing


async def test_tags_pages_report_rates_links_and_clients(store: Store, serve: Any) -> None:
    message_id = await campaign(store)
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    listing = await (await client.get("/tags")).text()
    assert 'href="/tags/spring-2026"' in listing and 'href="/tags/promo"' in listing
    answer = await client.get("/tags/spring-2026")
    assert answer.status == 200
    page = await answer.text()
    cards = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)", page))
    assert cards["Messages"] == "1" and cards["Recipients"] == "2" and cards["Delivered"] == "2"
    assert cards["Opened"] == "1" and cards["Clicked"] == "1"
    assert "https://shop.example.com/spring" in page
    assert "Thunderbird" in page and "desktop" in page
    csv_link = re.search(r'href="(/api/tags/spring-2026\?format=csv[^"]*)"', page)
    assert csv_link is not None
    csv = await client.get(csv_link.group(1).replace("&amp;", "&"))
    assert csv.status == 200 and "spring-2026" in await csv.text()
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert (await client.get(f"/tags/spring-2026?from={today}&to={today}")).status == 200
    assert (await client.get("/tags/spring-2026?from=2001-01-01&to=2001-01-02")).status == 404
    assert (await client.get("/tags/spring-2026?from=soon")).status == 400
    assert (await client.get("/tags/no-such-tag")).status == 404
    message = await (await client.get(f"/messages/{message_id}")).text()
    assert "Mail clients" in message and "Thunderbird" in message
    assert 'href="/tags/promo"' in message
