"""A message's copies follow the policy of the moment it was received, not the delivery's.

Spooled through the SMTP side's own functions (read_submission, copy_specs) into
the real SQLite store, delivered by the worker to an aiosmtpd sink with another
config, as after a SIGHUP or a restart between the two.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import dkim
from delivery.upstreams import SinkFactory
from support.dkim_keys import dns_answering, make_key

from relay.core.config import Config, DkimConfig, TrackingConfig, UpstreamConfig
from relay.core.models import Copy, CopySpec, NewMessage, TrackingDecision
from relay.core.store import Store
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from relay.delivery.signing import NO_KEY_NOTE, open_signer
from relay.delivery.upstream import open_upstream
from relay.delivery.worker import DeliveryWorker
from relay.rewrite.headers import header_values
from relay.smtp.followups import copy_specs
from relay.smtp.message import read_submission

BASE = "https://t.example.org"
CODEC = TokenCodec(["decided-once-key"])
HTML = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: news\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <news-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><p>Read <a href="https://example.com/news">the news</a>.</p>\r\n'
    b'<p><a href="https://example.com/unsubscribe?u=1">Unsubscribe</a></p></body></html>\r\n'
)


def tracking(**settings: object) -> TrackingConfig:
    return TrackingConfig(base_url=BASE, avoid_image_only=False, **settings)  # type: ignore[arg-type]


async def receive(store: Store, config: Config, raw: bytes) -> Copy:
    """What the SMTP front does with an accepted message under config; its one copy."""
    rcpts = ("bob@example.net",)
    parsed = read_submission(
        config, raw, helo="client.test", ip="127.0.0.1", auth_user=None, protocol="ESMTP",
        rcpt_tos=rcpts,
    )  # fmt: skip
    new = NewMessage(
        "alice@example.com", rcpts, parsed.raw, time.time(), "127.0.0.1", None,
        parsed.sender, parsed.subject, parsed.message_id, parsed.decision,
    )  # fmt: skip
    message_id = await store.spool(new, copy_specs(config, parsed.decision, rcpts))
    [copy] = [c for c in await store.due_copies(time.time() + 1, 100) if c.message_id == message_id]
    return copy


async def deliver(store: Store, config: Config, port: int, copies: list[Copy]) -> None:
    """One worker of config (its own [dkim] signer, if any) delivers the copies."""
    config = dataclasses.replace(config, upstream=UpstreamConfig(f"smtp://127.0.0.1:{port}"))
    upstream = open_upstream(config.upstream, helo_name="relay.test")
    worker = DeliveryWorker(config, store, CODEC, upstream, open_signer(config))
    for copy in copies:
        await worker.deliver_copy(copy)
    await worker.stop()


async def test_a_signed_message_whose_dkim_key_was_removed_goes_out_untouched(
    tmp_path: Path, store: Store, make_sink: SinkFactory
) -> None:
    """Received while [dkim] was set, the message was to be tracked and signed again.
    The key was removed before it was delivered: it cannot be signed as decided, and a
    rewritten copy would carry the sender's signature broken (SPEC 5 forbids it). It
    goes out exactly as received, untracked, the reason in its rewrite note: what an
    operator who withdrew the key expects (we never sign with a key taken away)."""
    pem, txt = make_key()
    (tmp_path / "dkim.pem").write_bytes(pem)
    with_key = Config(
        tracking=tracking(), dkim=DkimConfig("example.com", "relay", str(tmp_path / "dkim.pem"))
    )
    signature = dkim.sign(
        HTML, b"mail", b"sender.example", pem, canonicalize=(b"simple", b"simple"),
        include_headers=[b"from", b"to", b"subject", b"content-type"],
    )  # fmt: skip
    copy = await receive(store, with_key, signature + HTML)
    message = await store.get_message(copy.message_id)
    assert message is not None
    assert (message.decision.opens, message.decision.clicks, message.decision.resign) == (
        True,
        True,
        True,
    )

    handler, port = make_sink()
    await deliver(store, dataclasses.replace(with_key, dkim=None), port, [copy])
    [got] = handler.messages
    assert got.data.endswith(signature + HTML)  # only our Received on top
    assert f"{BASE}/".encode() not in got.data
    lookup = dns_answering({b"mail._domainkey.sender.example": txt})
    assert dkim.verify(got.data, dnsfunc=lookup)
    done = await store.get_copy(copy.id)
    assert done is not None
    assert (done.state, done.rewrite_note) == ("delivered", NO_KEY_NOTE)
    report = await store.message_report(copy.message_id)
    assert report is not None and report.links == ()  # nothing tracked to report


async def test_a_signed_message_is_signed_by_the_key_configured_at_delivery(
    tmp_path: Path, store: Store, make_sink: SinkFactory
) -> None:
    """Decided: tracked, signed again. The key was replaced meanwhile (a new selector):
    the new one signs, as the old one's DNS record may already be withdrawn."""
    old_pem, _ = make_key()
    new_pem, new_txt = make_key()
    (tmp_path / "old.pem").write_bytes(old_pem)
    (tmp_path / "new.pem").write_bytes(new_pem)
    spooling = Config(
        tracking=tracking(), dkim=DkimConfig("example.com", "s1", str(tmp_path / "old.pem"))
    )
    signature = dkim.sign(HTML, b"mail", b"sender.example", old_pem, include_headers=[b"from"])
    copy = await receive(store, spooling, signature + HTML)

    handler, port = make_sink()
    rotated = DkimConfig("example.com", "s2", str(tmp_path / "new.pem"))
    await deliver(store, dataclasses.replace(spooling, dkim=rotated), port, [copy])
    [got] = handler.messages
    assert f"{BASE}/c/".encode() in got.data
    [ours] = header_values(got.data, "dkim-signature")
    assert "s=s2" in ours
    assert dkim.verify(got.data, dnsfunc=dns_answering({b"s2._domainkey.example.com": new_txt}))


def link_tokens(raw: bytes) -> dict[int, str]:
    """Link index -> original URL of each click token in raw."""
    found = re.findall(rb"https://t\.example\.org/c/([A-Za-z0-9_-]+)", raw)
    return {d.link_index: d.url for d in (CODEC.verify(t.decode()) for t in found)}


async def test_changing_the_rewrite_settings_leaves_mail_already_received_alone(
    store: Store, make_sink: SinkFactory
) -> None:
    """Pixel position, exclude_links and the honeypot as they were at spool time; mail
    received after the change gets the new ones, from the same worker."""
    before = Config(
        tracking=tracking(
            pixel_position="top", exclude_links=(re.compile("unsubscribe"),), honeypot=True
        )
    )
    after = Config(tracking=tracking(pixel_position="bottom", exclude_links=(), honeypot=False))
    earlier = await receive(store, before, HTML)
    later = await receive(store, after, HTML.replace(b"news-1@", b"news-2@"))

    handler, port = make_sink()
    await deliver(store, after, port, [earlier, later])
    old_copy, new_copy = (got.data for got in handler.messages)

    body = old_copy.partition(b"\r\n\r\n")[2]
    assert body.index(b"/o/") < body.index(b"/c/")  # the pixel on top
    assert b'href="https://example.com/unsubscribe?u=1"' in old_copy  # excluded: left alone
    assert link_tokens(old_copy) == {
        0: "https://example.com/news",
        HONEYPOT_LINK_INDEX: f"{BASE}/",
    }

    body = new_copy.partition(b"\r\n\r\n")[2]
    assert body.index(b"/o/") > body.rindex(b"/c/")  # the pixel at the bottom
    assert link_tokens(new_copy) == {
        0: "https://example.com/news",
        1: "https://example.com/unsubscribe?u=1",
    }


async def test_a_message_spooled_before_the_decision_held_dkim_is_not_broken_either(
    store: Store, make_sink: SinkFactory
) -> None:
    """An older row's decision has no resign (it reads as None): its own signature says."""
    pem, txt = make_key()
    signature = dkim.sign(HTML, b"mail", b"sender.example", pem, include_headers=[b"from"])
    new = NewMessage(
        "alice@example.com", ("bob@example.net",), signature + HTML, time.time(), "127.0.0.1",
        None, "alice@example.com", "news", "<news-1@example.com>",
        TrackingDecision(opens=True, clicks=True),
    )  # fmt: skip
    message_id = await store.spool(new, [CopySpec("bob@example.net", ("bob@example.net",))])
    [copy] = [c for c in await store.due_copies(time.time() + 1, 100) if c.message_id == message_id]
    handler, port = make_sink()
    await deliver(store, Config(tracking=tracking()), port, [copy])
    [got] = handler.messages
    assert got.data == signature + HTML
    assert dkim.verify(got.data, dnsfunc=dns_answering({b"mail._domainkey.sender.example": txt}))
