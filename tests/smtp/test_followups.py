"""Replies, privacy-mode copies and the log-copy header, through the real SMTP front."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from smtp.running import LineClient, in_thread, smtp_config

from relay.core.config import Config, PrivacyConfig, TrackingConfig, TrackingPolicy
from relay.core.models import Event
from relay.core.store import Store
from relay.core.store.sqlite import SQLiteStore
from relay.smtp.server import SmtpServers, start_smtp

BOB, CAROL, DAVE = "bob@example.net", "carol@customer.example", "dave@customer.example"


def mail(message_id: str, *extra: str) -> bytes:
    head = ["From: alice@example.com", f"Message-ID: {message_id}", "Subject: hi", *extra]
    return ("\r\n".join(head) + "\r\n\r\n<p>hello</p>\r\n").encode()


def send(port: int, rcpts: list[str], data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("alice@example.com", rcpts, data)


class Fronts:
    """SMTP fronts on one store; close() also waits for the replies they record."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.started: list[SmtpServers] = []

    async def start(self, tracking: TrackingConfig | None = None) -> int:
        config = Config(smtp=smtp_config(), tracking=tracking or TrackingConfig())
        servers = await start_smtp(config, self.store, lambda: None)
        self.started.append(servers)
        return servers.addresses()[0][1]

    async def close(self) -> None:
        while self.started:
            await self.started.pop().close(grace=1.0)


@pytest.fixture
async def front(store: Store) -> AsyncIterator[Fronts]:
    fronts = Fronts(store)
    yield fronts
    await fronts.close()


async def events_of(store: Store, kind: str) -> list[Event]:
    return await store.list_events(kind=kind)


async def test_reply_records_reply_and_inferred_open_for_that_recipient(
    store: Store, front: Fronts
) -> None:
    port = await front.start()
    await in_thread(send, port, [BOB, CAROL], mail("<first@example.com>"))
    answer = mail(
        "<second@example.com>", "In-Reply-To: <x@y>", "References: <x@y> <first@example.com>"
    )
    await in_thread(send, port, [CAROL], answer)
    await front.close()
    [reply] = await events_of(store, "reply")
    assert (reply.recipient, reply.reasons) == (CAROL, ("reply",))
    [opened] = await events_of(store, "open")
    assert (opened.recipient, opened.inferred, opened.klass) == (CAROL, True, "human")
    assert opened.reasons == ("inferred:reply",)
    page, _ = await store.list_messages()
    first = next(s.message.id for s in page if s.message.message_id_header == "<first@example.com>")
    report = await store.message_report(first)
    assert report is not None
    assert [(r.address, r.replies) for r in report.recipients] == [(BOB, 0), (CAROL, 1)]
    assert [r.opens["inferred"] for r in report.recipients] == [0, 1]


async def test_the_250_waits_for_the_spool_commit_and_no_other(
    store: SQLiteStore, front: Fronts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording replies is a second write: the 250 goes out before it ends. A store
    slow to record them is a fault the real one will not make on cue, hence the stub."""
    port = await front.start()
    await in_thread(send, port, [BOB], mail("<first@example.com>"))
    recorded = asyncio.Event()
    record_replies = store.record_replies

    async def slow_record_replies(*args: Any) -> list[Event]:
        await recorded.wait()
        return await record_replies(*args)

    monkeypatch.setattr(store, "record_replies", slow_record_replies)
    before = store.transactions
    client = await LineClient.connect(port)
    for command in ("EHLO client.test", "MAIL FROM:<a@example.com>", f"RCPT TO:<{BOB}>", "DATA"):
        await client.command(command)
    await client.send(mail("<2@example.com>", "In-Reply-To: <first@example.com>") + b".\r\n")
    assert (await client.reply()).startswith("250 2.0.0 Ok: queued as ")
    assert store.transactions == before + 1  # the spool's
    await client.close()
    recorded.set()
    await front.close()
    assert [e.recipient for e in await events_of(store, "reply")] == [BOB]
    assert store.transactions == before + 2


async def test_no_reply_for_other_recipients_or_unknown_ids(store: Store, front: Fronts) -> None:
    port = await front.start()
    await in_thread(send, port, [BOB], mail("<first@example.com>"))
    await in_thread(send, port, [DAVE], mail("<2@example.com>", "In-Reply-To: <first@example.com>"))
    await in_thread(send, port, [BOB], mail("<3@example.com>", "In-Reply-To: <other@example.com>"))
    await front.close()
    assert await store.list_events() == []


async def test_second_reply_adds_no_second_inferred_open(store: Store, front: Fronts) -> None:
    port = await front.start()
    await in_thread(send, port, [BOB], mail("<first@example.com>"))
    for n in (2, 3):
        await in_thread(send, port, [BOB], mail(f"<{n}@x>", "In-Reply-To: <first@example.com>"))
    await front.close()
    assert len(await events_of(store, "reply")) == 2
    assert len(await events_of(store, "open")) == 1


async def test_privacy_mode_gives_own_copies_only_with_legal_basis(
    store: Store, front: Fronts
) -> None:
    privacy = PrivacyConfig(enabled=True, legal_basis=("*@customer.example",))
    port = await front.start(TrackingConfig(privacy=privacy))
    await in_thread(send, port, [BOB, CAROL, DAVE, "eve@example.org"], mail("<p@example.com>"))
    copies = await store.due_copies(time.time() + 60, 100)
    assert sorted((c.recipient or "", c.rcpt_tos) for c in copies) == [
        ("", (BOB, "eve@example.org")),
        (CAROL, (CAROL,)),
        (DAVE, (DAVE,)),
    ]


async def test_shared_copy_when_per_recipient_is_off(store: Store, front: Fronts) -> None:
    port = await front.start(TrackingConfig(per_recipient=False))
    await in_thread(send, port, [BOB, CAROL], mail("<s@example.com>"))
    [copy] = await store.due_copies(time.time() + 60, 100)
    assert (copy.recipient, copy.rcpt_tos) == (None, (BOB, CAROL))


@pytest.mark.parametrize(
    ("header", "logged"), [("X-Track-Log: yes", True), ("X-Track-Log: no", False), (None, False)]
)
async def test_log_copy_header_is_honoured_and_removed(
    store: Store, front: Fronts, header: str | None, logged: bool
) -> None:
    port = await front.start()
    await in_thread(send, port, [BOB], mail("<l@example.com>", *([header] if header else [])))
    [summary], _ = await store.list_messages()
    assert summary.message.decision.log_copy is logged
    assert b"X-Track-Log" not in await store.load_raw(summary.message.id)


async def test_policy_log_copy_can_be_switched_off_by_header(store: Store, front: Fronts) -> None:
    tracking = dataclasses.replace(
        TrackingConfig(), policy=(TrackingPolicy(match="*@example.com", log_copy=True),)
    )
    port = await front.start(tracking)
    await in_thread(send, port, [BOB], mail("<a@example.com>"))
    await in_thread(send, port, [BOB], mail("<b@example.com>", "X-Track-Log: no"))
    page, _ = await store.list_messages()
    assert [s.message.decision.log_copy for s in page] == [False, True]  # newest first
