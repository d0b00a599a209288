"""Reports and paging on a small hand-built dataset, checked number by number."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from support.messages import BOB, CAROL, SHARED, new_message, spool

from relay.core.models import (
    Copy,
    DeliveryOutcome,
    Event,
    EventClass,
    EventKind,
    LinkReport,
)
from relay.core.store import Store

T0 = 1_700_000_000.0
L0, L1 = "https://shop.example.com/a?x=1&y=2", "https://example.com/b"
ZERO_OPENS = {"human": 0, "inferred": 0, "proxy": 0, "bot": 0, "prefetch": 0, "self": 0}
ZERO_CLICKS = {"human": 0, "bot": 0, "prefetch": 0, "self": 0}


@dataclass
class Dataset:
    store: Store
    a: str  # bob and carol, one copy each
    b: str  # dave and erin, one shared copy
    c: str  # no events
    copies: dict[str, Copy]


async def event(
    store: Store,
    copy: Copy,
    kind: EventKind,
    klass: EventClass,
    at: float,
    link: int | None = None,
    inferred: bool = False,
) -> None:
    url = {None: "", 0: L0, 1: L1}[link]
    await store.record_event(
        Event(kind, copy.id, copy.message_id, copy.recipient, at, "192.0.2.9", "UA", klass,
              url=url, link_index=link, inferred=inferred)
    )  # fmt: skip


@pytest.fixture
async def data(store: Store) -> Dataset:
    a = (await spool(store, (BOB, CAROL), received_at=T0)).message_id
    shared = ("dave@example.net", "erin@example.net")
    b = (await spool(store, shared, received_at=T0 + 100, decision=SHARED)).message_id
    c = await store.spool(new_message(("zed@example.net",), received_at=T0 + 200), [])
    copies = {c.recipient or "shared": c for c in await store.due_copies(T0 + 1000, 10)}
    for copy in copies.values():
        await store.record_links(copy.id, [L0] if copy.recipient is None else [L0, L1])
    await store.record_outcome(copies[BOB].id, DeliveryOutcome("delivered", "250 ok"), None)
    bob, carol, someone = copies[BOB], copies[CAROL], copies["shared"]
    for ev in [
        (bob, "open", "human", T0 + 10), (bob, "open", "human", T0 + 80),
        (bob, "open", "proxy", T0 + 5), (bob, "open", "bot", T0 + 1),
        (bob, "click", "human", T0 + 30, 0), (bob, "click", "bot", T0 + 2, 1),
        (carol, "click", "human", T0 + 40, 1), (carol, "open", "prefetch", T0 + 3),
        (someone, "open", "human", T0 + 110), (someone, "open", "human", T0 + 180),
        (someone, "open", "self", T0 + 130), (someone, "click", "human", T0 + 140, 0),
    ]:  # fmt: skip
        await event(store, *ev)  # type: ignore[arg-type]
    await event(store, carol, "open", "human", T0 + 40, inferred=True)
    return Dataset(store, a, b, c, copies)


async def test_per_recipient_report(data: Dataset) -> None:
    report = await data.store.message_report(data.a)
    assert report is not None
    bob, carol = report.recipients
    assert (bob.address, bob.copy and bob.copy.state) == (BOB, "delivered")
    assert bob.opens == ZERO_OPENS | {"human": 2, "proxy": 1, "bot": 1}
    assert bob.clicks == ZERO_CLICKS | {"human": 1, "bot": 1}
    assert (bob.first_open, bob.last_open) == (T0 + 10, T0 + 80)
    assert bob.links == (
        LinkReport(L0, ZERO_CLICKS | {"human": 1, "unique_human": 1}),
        LinkReport(L1, ZERO_CLICKS | {"bot": 1, "unique_human": 0}),
    )
    assert (carol.address, carol.copy and carol.copy.state) == (CAROL, "queued")
    assert carol.opens == ZERO_OPENS | {"human": 1, "inferred": 1, "prefetch": 1}
    assert carol.clicks == ZERO_CLICKS | {"human": 1}
    assert (carol.first_open, carol.last_open) == (T0 + 40, T0 + 40)
    assert carol.links == (
        LinkReport(L0, ZERO_CLICKS | {"unique_human": 0}),
        LinkReport(L1, ZERO_CLICKS | {"human": 1, "unique_human": 1}),
    )
    assert report.someone.address is None and report.someone.copy is None
    assert (report.someone.opens, report.someone.clicks) == (ZERO_OPENS, ZERO_CLICKS)
    assert report.someone.links == ()
    assert report.links == (  # over both copies: unique_human counts recipients
        LinkReport(L0, ZERO_CLICKS | {"human": 1, "unique_human": 1}),
        LinkReport(L1, ZERO_CLICKS | {"human": 1, "bot": 1, "unique_human": 1}),
    )
    assert not bob.possibly_forwarded and not carol.possibly_forwarded


async def test_shared_copy_events_go_to_someone(data: Dataset) -> None:
    report = await data.store.message_report(data.b)
    assert report is not None
    assert [r.address for r in report.recipients] == ["dave@example.net", "erin@example.net"]
    assert all(r.opens == ZERO_OPENS and r.copy == data.copies["shared"] for r in report.recipients)
    someone = report.someone
    assert someone.copy == data.copies["shared"]
    assert someone.opens == ZERO_OPENS | {"human": 2, "self": 1}
    assert someone.clicks == ZERO_CLICKS | {"human": 1}
    assert (someone.first_open, someone.last_open) == (T0 + 110, T0 + 180)
    assert someone.links == (LinkReport(L0, ZERO_CLICKS | {"human": 1, "unique_human": 1}),)
    assert report.links == someone.links
    assert await data.store.message_report("0000000000000000ffff") is None


async def test_message_list_counts_and_paging(data: Dataset) -> None:
    page, cursor = await data.store.list_messages(limit=2)
    assert [s.message.id for s in page] == [data.c, data.b]
    assert cursor is not None
    c, b = page
    assert (c.recipients, c.states, c.opens["unique_human"]) == (1, {}, 0)
    assert (b.recipients, b.states) == (2, {"queued": 1})
    assert b.opens == ZERO_OPENS | {"human": 2, "self": 1, "unique_human": 1, "unique_maybe": 0}
    assert b.clicks == ZERO_CLICKS | {"human": 1, "unique_human": 1}

    rest, end = await data.store.list_messages(limit=2, cursor=cursor)
    assert end is None
    (a,) = rest
    assert a.message.id == data.a
    assert (a.recipients, a.states) == (2, {"delivered": 1, "queued": 1})
    opens = {"human": 3, "inferred": 1, "proxy": 1, "bot": 1, "prefetch": 1, "unique_human": 2,
             "unique_maybe": 0}  # fmt: skip
    assert a.opens == ZERO_OPENS | opens
    assert a.clicks == ZERO_CLICKS | {"human": 2, "bot": 1, "unique_human": 2}


async def test_paging_limits_and_bad_cursors(data: Dataset) -> None:
    everything, end = await data.store.list_messages(limit=10**9)
    assert len(everything) == 3 and end is None
    one, _ = await data.store.list_messages(limit=0)
    assert len(one) == 1
    for bad in ("!!", "x" * 500, "Zm9vYmFy", ""):
        with pytest.raises(ValueError):
            await data.store.list_messages(cursor=bad)


async def test_event_listing_filters(data: Dataset) -> None:
    events = await data.store.list_events()
    assert len(events) == 13
    ids = [e.id or 0 for e in events]
    assert ids == sorted(ids) and 0 not in ids
    clicks = await data.store.list_events(kind="click")
    assert len(clicks) == 4 and {e.url for e in clicks} == {L0, L1}
    bob = await data.store.list_events(recipient=BOB)
    assert len(bob) == 6 and {e.recipient for e in bob} == {BOB}
    later = await data.store.list_events(since_id=ids[10], limit=1)
    assert [e.id for e in later] == [events[11].id]
    inferred = events[-1]
    assert (inferred.inferred, inferred.klass, inferred.recipient) == (True, "human", CAROL)
