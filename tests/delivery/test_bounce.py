"""Bounces: an RFC 3464 DSN per bounced copy, once, with a null envelope sender."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time

from delivery.upstreams import SinkFactory
from support.messages import spool

from relay.core.config import Config, SmtpConfig, UpstreamConfig
from relay.core.metrics import Metrics
from relay.core.models import DeliveryOutcome, Message, TrackingDecision
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.bounce import build_dsn, status_code
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker

RAW = (
    b"From: Alice <alice@example.com>\r\nTo: gone@example.net\r\nSubject: hello there\r\n"
    b"Message-ID: <m1@example.com>\r\n\r\nbody that must not come back\r\n"
)


async def spool_from(store: Store, mail_from: str, rcpts: tuple[str, ...]) -> str:
    """RAW from `mail_from` (the envelope sender a bounce goes back to), not tracked."""
    spooled = await spool(
        store,
        rcpts,
        mail_from=mail_from,
        sender="alice@example.com",
        raw=RAW,
        subject="hello there",
        message_id_header="<m1@example.com>",
        decision=TrackingDecision(opens=False, clicks=False),
    )
    return spooled.message_id


def worker(store: Store, port: int, metrics: Metrics | None = None) -> DeliveryWorker:
    config = Config(
        smtp=SmtpConfig(hostname="relay.test"),
        upstream=UpstreamConfig(url=f"smtp://127.0.0.1:{port}", timeout=5.0),
    )
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    return DeliveryWorker(config, store, TokenCodec(["k"]), upstream, metrics=metrics)


async def test_a_5xx_sends_one_dsn_to_the_sender_with_a_null_envelope_sender(
    store: Store, make_sink: SinkFactory
) -> None:
    sink, port = make_sink()
    sink.rcpt_replies["gone@example.net"] = "550 5.1.1 <gone@example.net>: no such user"
    metrics = Metrics()
    message_id = await spool_from(
        store, "alice@example.com", ("gone@example.net", "ok@example.net")
    )
    running = worker(store, port, metrics)
    await running.start()
    try:
        delivered = await sink.received(2)
    finally:
        await running.stop()
    dsn = next(d for d in delivered if d.rcpt_tos == ["alice@example.com"])
    assert dsn.mail_from == "<>"
    parsed = email.message_from_bytes(dsn.data, policy=email.policy.compat32)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    human, status, headers = parsed.get_payload()
    assert human.get_content_type() == "text/plain"
    assert "gone@example.net" in human.get_payload()
    assert status.get_content_type() == "message/delivery-status"
    text = dsn.data.decode()
    assert "Final-Recipient: rfc822; gone@example.net" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: no such user" in text
    assert "ok@example.net" not in text.split("Content-Type: text/rfc822-headers")[0]
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Message-ID: <m1@example.com>" in text and "must not come back" not in text
    copies = {c.recipient: c for c in await store.copies_of(message_id)}
    assert copies["gone@example.net"].state == "bounced"
    assert await store.bounce_state(copies["gone@example.net"].id) == "sent"
    assert await store.bounce_state(copies["ok@example.net"].id) is None
    exposition = (await metrics.render(store))[0].decode()
    assert "relay_bounces_sent_total 1.0" in exposition
    assert 'relay_deliveries_total{outcome="bounced"} 1.0' in exposition
    assert 'relay_queue_copies{state="bounced"} 1.0' in exposition
    # A restart finds nothing left to send: exactly one DSN per bounced copy.
    again = worker(store, port)
    await again.start()
    await asyncio.sleep(1.5)
    await again.stop()
    assert len(sink.messages) == 2


async def test_no_dsn_for_a_null_sender(store: Store, make_sink: SinkFactory) -> None:
    sink, port = make_sink()
    sink.rcpt_replies["gone@example.net"] = "550 5.1.1 no such user"
    message_id = await spool_from(store, "", ("gone@example.net",))
    running = worker(store, port)
    await running.start()
    try:
        async with asyncio.timeout(15):
            while True:
                if (await store.copies_of(message_id))[0].state == "bounced":
                    break
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    finally:
        await running.stop()
    [copy] = await store.copies_of(message_id)
    assert await store.bounce_state(copy.id) == "skipped"
    assert await store.due_bounces(time.time() + 10**6, 10) == []
    assert sink.messages == []


async def test_a_pending_bounce_survives_a_restart(store: Store, make_sink: SinkFactory) -> None:
    """Bounced while nothing sends DSNs (a crash): the next worker sends it."""
    message_id = await spool_from(store, "alice@example.com", ("gone@example.net",))
    [copy] = await store.copies_of(message_id)
    await store.record_outcome(copy.id, DeliveryOutcome("permanent", "550 5.7.1 refused"), None)
    assert [b.copy_id for b in await store.due_bounces(time.time(), 10)] == [copy.id]
    sink, port = make_sink()
    running = worker(store, port)
    await running.start()
    try:
        [dsn] = await sink.received(1)
    finally:
        await running.stop()
    assert dsn.mail_from == "<>" and dsn.rcpt_tos == ["alice@example.com"]
    assert b"Status: 5.7.1" in dsn.data


def test_status_codes() -> None:
    assert status_code("550 5.1.1 no such user") == "5.1.1"
    assert status_code("554 transaction failed") == "5.0.0"
    assert status_code("gave up after 345600s in the queue; last reply: 451 x") == "4.4.7"


def test_dsn_lines_stay_short_and_the_original_headers_are_capped() -> None:
    message = Message(
        "m", "alice@example.com", ("b@example.net",), time.time(), "127.0.0.1", None,
        "alice@example.com", "s", "<m>", TrackingDecision(opens=False, clicks=False),
    )  # fmt: skip
    huge = b"".join(b"X-Filler: %d\r\n" % i for i in range(20_000)) + b"\r\nbody"
    dsn = build_dsn("relay.test", message, ["b@example.net"], "550 " + "y" * 5000, huge)
    assert len(dsn) < 80_000
    assert max(len(line) for line in dsn.split(b"\r\n")) <= 998
