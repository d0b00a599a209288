"""Tags, search, a tag's campaign report and the mail clients that opened (both engines)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from support.messages import BOB, CAROL, RECIPIENTS, new_message, spool

from relay.core.models import CopySpec, DeliveryOutcome, Event, MessageFilter
from relay.core.store import Store

DAVE = "dave@example.com"
DAY = 86400.0
DELIVERED = DeliveryOutcome("delivered", "250 2.0.0 ok")
BOUNCED = DeliveryOutcome("permanent", "550 5.1.1 no such user")


async def tagged(
    store: Store,
    subject: str,
    at: float,
    tags: tuple[str, ...] = (),
    rcpts: Sequence[str] = RECIPIENTS,
) -> tuple[str, dict[str, int]]:
    """The message id and its copies by recipient."""
    spooled = await spool(store, rcpts, subject=subject, received_at=at, tags=tags)
    return spooled.message_id, spooled.ids


async def test_tags_are_stored_listed_and_searched(store: Store) -> None:
    now = time.time()
    first, _ = await tagged(store, "Spring sale", now - 3 * DAY, ("Promo", "spring"))
    second, _ = await tagged(store, "Invoice 42", now - DAY, ("billing", "PROMO"))
    third, _ = await tagged(store, "hello", now - 60, (), (DAVE,))
    page, _ = await store.list_messages()
    assert {s.message.id: s.message.tags for s in page} == {
        first: ("Promo", "spring"),
        second: ("billing", "PROMO"),
        third: (),
    }
    listed = await store.list_tags()
    assert [(t.tag, t.messages) for t in listed] == [("billing", 1), ("PROMO", 2), ("spring", 1)]
    assert abs(listed[1].last_used - (now - DAY)) < 1

    async def ids(where: MessageFilter) -> list[str]:
        found, _ = await store.find_messages(where)
        return [s.message.id for s in found]

    assert await ids(MessageFilter(tag="promo")) == [second, first]
    assert await ids(MessageFilter(tag="Promo", q="SALE")) == [first]
    assert await ids(MessageFilter(q="invoice")) == [second]
    assert await ids(MessageFilter(q="50%")) == []  # % is a character, not a wildcard
    assert await ids(MessageFilter(q=DAVE)) == [third]
    assert await ids(MessageFilter(recipient=BOB)) == [second, first]
    assert await ids(MessageFilter(recipient=BOB, since=now - 2 * DAY)) == [second]
    assert await ids(MessageFilter(state="queued", until=now - 2 * DAY)) == [first]
    assert await ids(MessageFilter(state="delivered")) == []
    report = await store.message_report(first)
    assert report is not None and report.message.tags == ("Promo", "spring")


async def test_a_shared_copys_recipients_find_their_message(store: Store) -> None:
    msg = new_message((BOB, "Erin@Example.com"), subject="team news")
    shared = await store.spool(msg, [CopySpec(None, msg.rcpt_tos)])  # one copy for both
    found, _ = await store.find_messages(MessageFilter(recipient="erin@example.com"))
    assert [s.message.id for s in found] == [shared]
    found, _ = await store.find_messages(MessageFilter(q=BOB))
    assert [s.message.id for s in found] == [shared]
    found, _ = await store.find_messages(MessageFilter(recipient="b@example.net"))
    assert found == []  # a whole address, not a part of one


async def test_tag_report_rates_links_and_clients(store: Store) -> None:
    now = time.time()
    old, _ = await tagged(store, "old", now - 40 * DAY, ("launch",))
    mid, copies = await tagged(store, "new", now - DAY, ("Launch",), (BOB, CAROL, DAVE))
    await store.record_outcome(copies[BOB], DELIVERED, None)
    await store.record_outcome(copies[CAROL], DELIVERED, None)
    await store.record_outcome(copies[DAVE], BOUNCED, None)
    outlook = "Microsoft Office/16.0 (Microsoft Outlook 16.0.1)"
    gmail = "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"
    events = [
        Event("open", copies[BOB], mid, BOB, now - 50, "192.0.2.1", outlook),
        Event("open", copies[BOB], mid, BOB, now - 40, "192.0.2.1", outlook),
        Event("click", copies[BOB], mid, BOB, now - 30, "192.0.2.1", outlook, url="https://a/"),
        Event(
            "open",
            copies[CAROL],
            mid,
            CAROL,
            now - 20,
            "66.249.0.1",
            gmail,
            klass="proxy",
            reasons=("ua:google-image-proxy",),
        ),
        Event("click", copies[CAROL], mid, CAROL, now - 10, "192.0.2.9", "x", klass="bot", url="b"),
        # a proxy fetch of a copy a person opened too: opened, not "maybe"
        Event("open", copies[BOB], mid, BOB, now - 5, "17.0.0.1", "bare", klass="proxy"),
    ]
    for event in events:
        await store.record_event(event)
    report = await store.tag_report("LAUNCH", since=now - 30 * DAY)
    assert report is not None
    assert (report.tag, report.messages, report.recipients) == ("Launch", 1, 3)
    assert (report.delivered, report.bounced) == (2, 1)
    assert report.opens == {"unique_human": 1, "unique_maybe": 1}
    assert report.clicks == {"unique_human": 1}
    assert (report.open_rate, report.proxy_rate, report.click_rate) == (0.5, 0.5, 0.5)
    assert report.click_to_open == 1.0
    assert report.links == (("https://a/", 1),)
    everything = await store.tag_report("launch")
    assert everything is not None and everything.messages == 2
    assert await store.tag_report("launch", since=now + DAY) is None
    assert await store.tag_report("nothing") is None
    page, _ = await store.find_messages(MessageFilter(tag="launch"))
    assert [(s.message.id, s.open_rate, s.click_rate) for s in page] == [
        (mid, 0.5, 0.5),
        (old, 0.0, 0.0),
    ]
    clients = await store.message_clients(mid)
    assert sorted((c.copy_id, c.klass, c.user_agent, c.opens) for c in clients) == [
        (copies[BOB], "human", outlook, 2),
        (copies[BOB], "proxy", "bare", 1),
        (copies[CAROL], "proxy", gmail, 1),
    ]
    proxy = next(c for c in clients if c.user_agent == gmail)
    assert proxy.reasons == ("ua:google-image-proxy",)
    assert len(await store.tag_clients("launch", since=now - 30 * DAY)) == 3
    assert await store.tag_clients("launch", until=now - 30 * DAY) == []


async def test_subject_words_are_literal(store: Store) -> None:
    now = time.time()
    percent, _ = await tagged(store, "Now 100% OFF", now - 3)
    underscore, _ = await tagged(store, "file a_b.txt", now - 2)
    await tagged(store, "file axb.txt", now - 1)

    async def ids(q: str) -> list[str]:
        found, _ = await store.find_messages(MessageFilter(q=q))
        return [s.message.id for s in found]

    assert await ids("0%") == [percent]
    assert await ids("100% off") == [percent]
    assert await ids("a_b") == [underscore]
    assert await ids("a\\b") == []


async def test_bad_tags_never_fail_a_message(store: Store) -> None:
    tags = ("", "  ", "x" * 500, *(f"t{i}" for i in range(40)), "T1", "a\x00b")
    message_id, _ = await tagged(store, "many", time.time(), tags)
    page, _ = await store.list_messages()
    stored = page[0].message.tags
    assert page[0].message.id == message_id
    assert len(stored) == 20 and all(len(t) <= 100 for t in stored)
