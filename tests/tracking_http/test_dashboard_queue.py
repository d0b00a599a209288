"""The queue and webhooks pages: what waits and failed, and the buttons, each a POST with
the session's form value."""

from __future__ import annotations

import re
import time
from typing import Any

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.models import DeliveryOutcome, Event, WebhookTarget
from relay.core.store import Store
from tracking_http.app import create_admin_app

from .test_dashboard import BOB, CAROL, TOKEN, admin_config, copy_ids, logged_in, spool


def form_value(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None
    return found.group(1)


async def test_queue_page_lists_waiting_and_bounced_copies(store: Store, serve: Any) -> None:
    message_id = await spool(store, "Weekly <news>")
    ids = await copy_ids(store, message_id)
    later = time.time() + 3600
    await store.record_outcome(
        ids[BOB], DeliveryOutcome("temporary", "451 4.7.1 greylisted"), later
    )
    await store.record_outcome(ids[CAROL], DeliveryOutcome("permanent", "550 5.1.1 no user"), None)
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    page = await client.get("/queue")
    assert page.status == 200
    text = await page.text()
    assert "Weekly &lt;news&gt;" in text
    assert "451 4.7.1 greylisted" in text and "550 5.1.1 no user" in text
    assert f'id="copy-{ids[BOB]}"' in text and f'id="copy-{ids[CAROL]}"' not in text
    assert "deferred 1" in text and "bounced 1" in text

    csrf = form_value(text)
    refused = await client.post("/queue/retry", data={"copy": str(ids[BOB])})
    assert refused.status == 403
    refused = await client.post("/queue/retry", data={"copy": str(ids[BOB]), "csrf": "0" * 64})
    assert refused.status == 403
    bad = await client.post("/queue/retry", data={"copy": "x1", "csrf": csrf})
    assert bad.status == 400
    done = await client.post(
        "/queue/retry", data={"copy": str(ids[BOB]), "csrf": csrf}, allow_redirects=False
    )
    assert (done.status, done.headers["Location"]) == (303, "/queue?done=retried&n=1")
    copy = await store.get_copy(ids[BOB])
    assert copy is not None and copy.next_attempt_at <= time.time()
    shown = await (await client.get("/queue?done=retried&n=1")).text()
    assert "1 copy will be tried again now." in shown
    assert f'aria-label="Send again: copy {ids[CAROL]}"' in shown  # its body is kept
    again = await client.post(
        "/queue/retry", data={"copy": str(ids[CAROL]), "csrf": csrf}, allow_redirects=False
    )
    assert again.headers["Location"] == "/queue?done=retried&n=1"
    sent_again = await store.get_copy(ids[CAROL])
    assert sent_again is not None and sent_again.state == "queued"
    assert await store.bounce_state(ids[CAROL]) is None  # its DSN, not sent yet, is dropped
    assert (await client.get("/queue?n=1")).status == 200  # half a note: no note
    for bad in ("done=<script>&n=1", "done=retried&n=x", "done=retried&n=-1"):
        answer = await client.get(f"/queue?{bad}")
        assert answer.status == 400 and "<script>" not in await answer.text(), bad

    ask = await client.post("/queue/delete", data={"copy": str(ids[BOB]), "csrf": csrf})
    assert ask.status == 200 and "Delete from the queue?" in await ask.text()
    assert await store.get_copy(ids[BOB]) is not None  # asked, not done
    odd = await client.post(
        "/queue/delete", data={"copy": str(ids[BOB]), "csrf": csrf, "confirm": "y"}
    )
    assert odd.status == 400 and await store.get_copy(ids[BOB]) is not None
    gone = await client.post(
        "/queue/delete",
        data={"copy": str(ids[BOB]), "csrf": csrf, "confirm": "yes"},
        allow_redirects=False,
    )
    assert (gone.status, gone.headers["Location"]) == (303, "/queue?done=deleted&n=1")
    assert await store.get_copy(ids[BOB]) is None


async def test_the_bearer_header_needs_no_form_value(store: Store, serve: Any) -> None:
    message_id = await spool(store, "Scripted")
    ids = await copy_ids(store, message_id)
    client = await serve(create_admin_app(admin_config(), store))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    done = await client.post(
        "/queue/retry", data={"copy": str(ids[BOB])}, headers=auth, allow_redirects=False
    )
    assert done.status == 303
    nobody = await client.post("/queue/retry", data={"copy": "1"}, allow_redirects=False)
    assert (nobody.status, nobody.headers["Location"]) == (303, "/login")


async def test_open_mode_forms_still_carry_a_value(store: Store, serve: Any) -> None:
    """No token on loopback: no cookie, yet another site cannot post through the browser."""
    config = Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=""))
    message_id = await spool(store, "Open")
    ids = await copy_ids(store, message_id)
    client = await serve(create_admin_app(config, store))
    csrf = form_value(await (await client.get("/queue")).text())
    assert (await client.post("/queue/retry", data={"copy": str(ids[BOB])})).status == 403
    done = await client.post(
        "/queue/retry", data={"copy": str(ids[BOB]), "csrf": csrf}, allow_redirects=False
    )
    assert done.status == 303


async def test_webhooks_page_lists_failed_deliveries_and_retries_them(
    store: Store, serve: Any
) -> None:
    message_id = await spool(store, "Hooked")
    ids = await copy_ids(store, message_id)
    await store.want_webhooks(True)
    now = time.time()
    await store.record_event(Event("open", ids[BOB], message_id, BOB, now, "198.51.100.7", "UA"))
    hook = WebhookTarget("https://hooks.example.com/relay", ("open",))
    while await store.queue_webhooks([hook]):
        pass
    (claimed,) = await store.claim_webhooks(now + 1, lease=60, limit=10)
    await store.settle_webhook(claimed.id, delivered=False, error="HTTP 502 <bad gateway>")
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    text = await (await client.get("/webhooks")).text()
    assert "https://hooks.example.com/relay" in text and "HTTP 502 &lt;bad gateway&gt;" in text
    assert f'id="delivery-{claimed.id}"' in text and "failed 1" in text
    csrf = form_value(text)
    assert (await client.post("/webhooks/retry", data={"delivery": str(claimed.id)})).status == 403
    done = await client.post(
        "/webhooks/retry", data={"delivery": str(claimed.id), "csrf": csrf}, allow_redirects=False
    )
    assert (done.status, done.headers["Location"]) == (303, "/webhooks?done=hooks&n=1")
    assert await store.webhook_backlog() == {"queued": 0, "pending": 1, "failed": 0}
