"""The delivery worker over the real SQLite store, real tokens and real upstreams."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from delivery.upstreams import SinkFactory
from support.messages import new_message, spool_message
from support.processes import free_port

from relay.core.config import Config, TrackingConfig, UpstreamConfig
from relay.core.models import Copy, DeliveryOutcome
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from relay.delivery.upstream import Upstream, open_upstream
from relay.delivery.worker import DeliveryWorker, retry_at

BASE = "https://t.example.org"
CODEC = TokenCodec(["worker-test-key"])
HTML = (
    b"From: a@example.com\r\nTo: b@example.net, c@example.net\r\nSubject: news\r\n"
    b"Message-ID: <n1@example.com>\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><a href="https://example.com/news?id=1&amp;p=2">read</a></body></html>\r\n'
)


def relay_config(url: str, **upstream: object) -> Config:
    settings = {"url": url, "timeout": 5.0, **upstream}
    return Config(
        upstream=UpstreamConfig(**settings),  # type: ignore[arg-type]
        tracking=TrackingConfig(base_url=BASE, avoid_image_only=False),  # short test HTML
    )


async def spool(store: Store, rcpts: Sequence[str], received_at: float | None = None) -> list[Copy]:
    """Spool HTML to rcpts, one copy each; returns the copies, in recipient order."""
    spooled = await spool_message(
        store,
        new_message(
            rcpts, mail_from="a@example.com", raw=HTML, received_at=received_at,
            subject="news", message_id_header="<n1@example.com>",
        ),
    )  # fmt: skip
    return [spooled[r] for r in rcpts]


async def current(store: Store, copy: Copy) -> Copy:
    found = await store.get_copy(copy.id)
    assert found is not None
    return found


async def wait_until_settled(store: Store, copies: Sequence[Copy]) -> None:
    """Until every copy is delivered or bounced (at most 10 s: the poll is 1 s)."""
    async with asyncio.timeout(10):
        while True:
            states = [(await current(store, c)).state for c in copies]
            if all(s in ("delivered", "bounced") for s in states):
                return
            await asyncio.sleep(0.05)


async def test_one_copy_per_recipient_with_its_own_tokens(
    store: Store, make_sink: SinkFactory
) -> None:
    handler, port = make_sink()
    worker = worker_for(store, relay_config(f"smtp://127.0.0.1:{port}"))
    await worker.start()
    copies = await spool(store, ["b@example.net", "c@example.net"])
    worker.wake()
    await wait_until_settled(store, copies)
    await worker.stop()
    assert len(handler.messages) == 2
    seen: dict[str, int] = {}
    for got in handler.messages:
        [rcpt] = got.rcpt_tos
        clicks = re.findall(rb"https://t\.example\.org/c/([A-Za-z0-9_-]+)", got.data)
        opens = re.findall(rb"https://t\.example\.org/o/([A-Za-z0-9_-]+)\.gif", got.data)
        assert len(clicks) == len(opens) == 1
        click, pixel = CODEC.verify(clicks[0].decode()), CODEC.verify(opens[0].decode())
        assert click.url == "https://example.com/news?id=1&p=2"
        assert click.copy_id == pixel.copy_id
        seen[rcpt] = click.copy_id
    assert seen == {c.recipient: c.id for c in copies}
    for copy in copies:
        done = await current(store, copy)
        assert done.state == "delivered"
        assert re.fullmatch(r"Q\d", done.queue_id)
    report = await store.message_report(copies[0].message_id)
    assert report is not None
    for recipient in report.recipients:
        assert [link.url for link in recipient.links] == ["https://example.com/news?id=1&p=2"]


async def test_temporary_failures_follow_the_schedule(store: Store, make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    handler.data_replies += ["451 4.3.0 later", "452 4.3.1 still later"]
    worker = worker_for(store, relay_config(f"smtp://127.0.0.1:{port}", retry_schedule=(60, 300)))
    [copy] = await spool(store, ["b@example.net"])
    for expected_wait, reply in ((60, "451 4.3.0 later"), (300, "452 4.3.1 still later")):
        before = time.time()
        await worker.deliver_copy(await current(store, copy))
        deferred = await current(store, copy)
        assert (deferred.state, deferred.last_reply) == ("deferred", reply)
        assert before + expected_wait <= deferred.next_attempt_at <= time.time() + expected_wait
    await worker.deliver_copy(await current(store, copy))
    await worker.stop()
    assert (await current(store, copy)).state == "delivered"
    assert len(handler.messages) == 1


async def test_permanent_failure_bounces(store: Store, make_sink: SinkFactory) -> None:
    handler, port = make_sink()
    handler.rcpt_replies["b@example.net"] = "550 5.1.1 no such user"
    worker = worker_for(store, relay_config(f"smtp://127.0.0.1:{port}"))
    [copy] = await spool(store, ["b@example.net"])
    await worker.deliver_copy(copy)
    await worker.stop()
    bounced = await current(store, copy)
    assert bounced.state == "bounced"
    assert "550 5.1.1" in bounced.last_reply


async def test_upstream_down_defers_and_old_mail_bounces(store: Store) -> None:
    worker = worker_for(store, relay_config(f"smtp://127.0.0.1:{free_port()}"))
    [fresh] = await spool(store, ["b@example.net"])
    [old] = await spool(store, ["c@example.net"], received_at=time.time() - 5 * 86400)
    await worker.deliver_copy(fresh)
    await worker.deliver_copy(old)
    await worker.stop()
    assert (await current(store, fresh)).state == "deferred"
    gave_up = await current(store, old)
    assert gave_up.state == "bounced"
    assert "gave up" in gave_up.last_reply


async def test_stop_lets_the_copy_in_flight_finish(
    store: Store, misbehaving: Callable[[str], Any]
) -> None:
    port = await misbehaving("silent")  # greets, then never answers MAIL
    worker = worker_for(store, relay_config(f"smtp://127.0.0.1:{port}", timeout=1.0))
    await worker.start()
    [copy] = await spool(store, ["b@example.net"])
    worker.wake()
    await asyncio.sleep(0.3)
    assert (await current(store, copy)).state == "queued"  # still in flight
    async with asyncio.timeout(6):
        await worker.stop()
    stopped = await current(store, copy)
    assert stopped.state == "deferred"
    assert "imed out" in stopped.last_reply


class ExplodingUpstream:
    """A bug cannot be produced for real: this upstream raises for one recipient."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner

    async def send(self, mail_from: str, rcpt_tos: Sequence[str], data: bytes) -> DeliveryOutcome:
        if "boom@example.net" in rcpt_tos:
            raise RuntimeError("a bug")
        return await self.inner.send(mail_from, rcpt_tos, data)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_bug_in_one_copy_does_not_stop_the_worker(store: Store, tmp_path: Path) -> None:
    config = relay_config(f"maildir:{tmp_path / 'outbox'}")
    upstream = ExplodingUpstream(open_upstream(config.upstream))
    worker = DeliveryWorker(config, store, CODEC, upstream)
    await worker.start()
    boom, fine = await spool(store, ["boom@example.net", "fine@example.net"])
    worker.wake()
    await wait_until_settled(store, [fine])
    await worker.stop()
    assert len(list((tmp_path / "outbox" / "new").iterdir())) == 1
    deferred = await current(store, boom)
    assert deferred.state == "deferred"
    assert "internal error: a bug" in deferred.last_reply


def test_retry_schedule_repeats_its_last_step_until_max_age() -> None:
    config = UpstreamConfig(retry_schedule=(60, 300), max_queue_age=3600)
    assert retry_at(config, 0, 1000, 1000) == 1060
    assert retry_at(config, 1, 1000, 1100) == 1400
    assert retry_at(config, 9, 1000, 2000) == 2300
    assert retry_at(config, 9, 1000, 4500) == 4600  # pulled in to the age limit
    assert retry_at(config, 9, 1000, 4600) is None


def worker_for(store: Store, config: Config) -> DeliveryWorker:
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    return DeliveryWorker(config, store, CODEC, upstream)
