"""A shared copy whose recipients the upstream answers apart: each gets its own outcome.

Real parts throughout: the SQLite store, the delivery worker, an aiosmtpd
upstream refusing some recipients with 450 and others with 550/553, the DSN it
receives, and the admin API and dashboard over a real socket.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from delivery.upstreams import SinkFactory
from support.messages import ALICE, SHARED, spool

from relay.core.config import AdminConfig, Config, HostPort, SmtpConfig, UpstreamConfig
from relay.core.models import (
    Copy,
    DeliveryOutcome,
    RecipientRefusal,
)
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.recipients import answered_apart
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker
from tracking_http.app import create_admin_app

OK, BUSY, GONE, BAD = "ok@example.net", "busy@example.net", "gone@example.net", "bad@example.org"
BUSY_REPLY = "450 4.2.1 <busy@example.net>: mailbox busy"
GONE_REPLY = "550 5.1.1 <gone@example.net>: no such user"
BAD_REPLY = "553 5.1.3 <bad@example.org>: bad address"
TOKEN = "outcomes-admin-token"
Client = TestClient[web.Request, web.Application]
RAW = (
    b"From: Alice <alice@example.com>\r\nTo: undisclosed-recipients:;\r\nSubject: shared news\r\n"
    b"Message-ID: <shared@example.com>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><a href="https://example.com/a">read</a> body text</body></html>\r\n'
)


def config(port: int) -> Config:
    return Config(
        smtp=SmtpConfig(hostname="relay.test"),
        upstream=UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=5.0, retry_schedule=(1.0,)),
        admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN),
    )


async def spool_shared(store: Store, rcpts: tuple[str, ...]) -> str:
    """RAW to rcpts as one shared copy."""
    spooled = await spool(
        store, rcpts, raw=RAW, subject="shared news", message_id_header="<shared@example.com>",
        decision=SHARED,
    )  # fmt: skip
    return spooled.message_id


async def settled(store: Store, message_id: str, copies: int) -> list[Copy]:
    """Until the message has this many copies, all delivered or bounced (15 s at most)."""
    async with asyncio.timeout(15):
        while True:
            found = await store.copies_of(message_id)
            if len(found) == copies and all(c.state in ("delivered", "bounced") for c in found):
                return found
            await asyncio.sleep(0.05)


@pytest.fixture
async def admin(store: Store) -> AsyncIterator[Client]:
    client = TestClient(TestServer(create_admin_app(config(25), store), host="127.0.0.1"))
    await client.start_server()
    yield client
    await client.close()


async def test_refused_recipients_of_a_shared_copy_get_their_own_outcomes(
    store: Store,
    make_sink: SinkFactory,
    admin: Client,
) -> None:
    sink, port = make_sink()
    sink.rcpt_replies.update({BUSY: BUSY_REPLY, GONE: GONE_REPLY, BAD: BAD_REPLY})
    relay = config(port)
    worker = DeliveryWorker(
        relay, store, TokenCodec(["k"]), open_upstream(relay.upstream, helo_name="relay.test")
    )
    message_id = await spool_shared(store, (OK, BUSY, GONE, BAD))
    await worker.start()
    try:
        worker.wake()
        async with asyncio.timeout(15):  # the first attempt splits the copy in three
            while True:
                if len(await store.copies_of(message_id)) == 3:
                    break
                await asyncio.sleep(0.02)
        first = {c.id: c for c in await store.copies_of(message_id)}
        deferred = next(c for c in first.values() if c.state == "deferred")
        assert deferred.rcpt_tos == (BUSY,)
        assert deferred.last_reply == BUSY_REPLY
        assert deferred.attempts == 1
        assert time.time() < deferred.next_attempt_at <= time.time() + 1.0
        body = await api_detail(admin, message_id)
        assert body["recipients"][BUSY]["state"] == "deferred"
        assert body["recipients"][BUSY]["next_attempt_at"] is not None
        del sink.rcpt_replies[BUSY]  # the mailbox is free again: the retry goes through
        copies = await settled(store, message_id, 3)
        await sink.received(3)  # OK's copy, the DSN, BUSY's retry
        await asyncio.sleep(1.2)  # nothing more comes: no copy or DSN goes out twice
    finally:
        await worker.stop()

    to_recipients = [m for m in sink.messages if m.mail_from == f"{ALICE}"]
    assert [m.rcpt_tos for m in to_recipients] == [[OK], [BUSY]]  # each once; BUSY alone
    by_rcpts = {c.rcpt_tos: c for c in copies}
    kept, retried, bounced = by_rcpts[(OK,)], by_rcpts[(BUSY,)], by_rcpts[(GONE, BAD)]
    assert kept.id == min(first)  # the original copy: its tokens went to OK
    assert (kept.state, kept.queue_id) == ("delivered", "Q1")
    assert (retried.state, retried.attempts) == ("delivered", 2)
    assert retried.replies == {} and retried.last_reply.startswith("250")
    assert bounced.state == "bounced"
    assert bounced.replies == {GONE: GONE_REPLY, BAD: BAD_REPLY}
    assert await store.bounce_state(bounced.id) == "sent"
    assert await store.bounce_state(kept.id) is None

    [dsn] = [m for m in sink.messages if m.mail_from == "<>"]
    assert dsn.rcpt_tos == [ALICE]
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/report"
    report = dsn.data.decode().split("Content-Type: text/rfc822-headers")[0]
    assert f"Final-Recipient: rfc822; {GONE}" in report
    assert f"Final-Recipient: rfc822; {BAD}" in report
    assert f"Diagnostic-Code: smtp; {GONE_REPLY}" in report
    assert f"Diagnostic-Code: smtp; {BAD_REPLY}" in report
    assert "Status: 5.1.1" in report and "Status: 5.1.3" in report
    assert OK not in report and BUSY not in report

    body = await api_detail(admin, message_id)
    assert set(body["recipients"]) == {OK, BUSY, GONE, BAD}
    mine = body["recipients"]
    assert (mine[OK]["state"], mine[OK]["queue_id"], mine[OK]["shared"]) == (
        "delivered",
        "Q1",
        True,
    )
    assert mine[BUSY]["state"] == "delivered" and mine[BUSY]["attempts"] == 2
    assert (mine[GONE]["state"], mine[GONE]["last_reply"]) == ("bounced", GONE_REPLY)
    assert (mine[BAD]["state"], mine[BAD]["last_reply"]) == ("bounced", BAD_REPLY)
    assert mine[GONE]["copy_id"] == mine[BAD]["copy_id"] == bounced.id
    page = await admin.get(f"/messages/{message_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    html = await page.text()
    assert page.status == 200
    for address, state in ((OK, "delivered"), (BUSY, "delivered"), (GONE, "bounced")):
        section = html.split(f">{address}</a>", 1)[1].split("</section>", 1)[0]
        assert f"state-{state}" in section
    assert "no such user" in html.split(f">{GONE}</a>", 1)[1].split("</section>", 1)[0]
    assert "bad address" not in html.split(f">{GONE}</a>", 1)[1].split("</section>", 1)[0]


async def api_detail(client: Client, message_id: str) -> dict[str, Any]:
    """The message's API detail, its recipients keyed by address."""
    resp = await client.get(
        f"/api/messages/{message_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 200
    body = await resp.json()
    body["recipients"] = {r["address"]: r for r in body["recipients"]}
    return body


async def test_every_recipient_refused_apart_is_split_too(
    store: Store, make_sink: SinkFactory
) -> None:
    """No recipient accepted: the 4xx one is deferred alone, the 5xx one bounced."""
    sink, port = make_sink()
    sink.rcpt_replies.update({BUSY: BUSY_REPLY, GONE: GONE_REPLY})
    relay = config(port)
    worker = DeliveryWorker(
        relay, store, TokenCodec(["k"]), open_upstream(relay.upstream, helo_name="relay.test")
    )
    message_id = await spool_shared(store, (BUSY, GONE))
    [copy] = await store.copies_of(message_id)
    await worker.deliver_copy(copy)
    await worker.stop()
    found = {c.rcpt_tos: c for c in await store.copies_of(message_id)}
    assert found[(BUSY,)].id == copy.id and found[(BUSY,)].state == "deferred"
    assert (found[(GONE,)].state, found[(GONE,)].last_reply) == ("bounced", GONE_REPLY)
    assert sink.messages == []


def test_answered_apart_groups_by_outcome_in_order() -> None:
    outcome = DeliveryOutcome(
        "delivered",
        "250 ok queued as X",
        "X",
        (
            RecipientRefusal(GONE, "permanent", GONE_REPLY),
            RecipientRefusal(BUSY, "temporary", BUSY_REPLY),
            RecipientRefusal(BAD, "permanent", GONE_REPLY),
        ),
    )
    groups = answered_apart((GONE, OK, BUSY, BAD, "x@example.net"), outcome)
    assert [(g.rcpt_tos, g.outcome.status, g.outcome.queue_id) for g in groups] == [
        ((OK, "x@example.net"), "delivered", "X"),
        ((BUSY,), "temporary", ""),
        ((GONE, BAD), "permanent", ""),
    ]
    assert groups[2].outcome.reply == GONE_REPLY and groups[2].replies == {}  # the same reply
    plain = DeliveryOutcome("temporary", "451 later")
    [only] = answered_apart((OK, BUSY), plain)
    assert (only.rcpt_tos, only.outcome, only.replies) == ((OK, BUSY), plain, {})
