"""Dashboard pages with 100,000 messages and 1,000,000 events, and the live feed's fan-out.

Also search and tags (issue 15): 200 tags over the messages, and the p50 of a search
by recipient, by a subject word, a tag's report over 30 days and the messages list
with rates, through the JSON API.

1. Fills a store with the bulk loader (relay.core.store.sqlite.bulk), or reuses --db.
2. Starts `python -m relay http` on it and a bare aiohttp server (the baseline) that
   answers a static page of the same size as the messages list, each as its own process.
3. Times N sequential GETs of the messages list, a message page (random messages) and
   the 14-day chart with a real aiohttp client (bearer token), and the baseline: p50, p95.
4. SSE fan-out: 100 clients on /api/events/stream while pixel requests are sent at
   1,000/s for a few seconds; counts the events each client received.

    .venv/bin/python benchmarks/dashboard.py [--messages 100000] [--events 1000000]
        [--tags 200] [--requests 200] [--feeds 100] [--rate 1000] [--seconds 5] [--db FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
from smtp_load import free_port, wait_port  # the benchmarks' shared loopback helpers

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay.core.config import StoreConfig  # noqa: E402
from relay.core.models import CopySpec, Event, NewMessage, TrackingDecision  # noqa: E402
from relay.core.store import open_store  # noqa: E402
from relay.core.store.sqlite.bulk import BulkLoader  # noqa: E402
from relay.core.tokens import TokenCodec  # noqa: E402

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAYS = 30
SENDERS = [f"sender{i}@example.com" for i in range(50)]
CLASSES = ["human"] * 6 + ["proxy", "bot", "prefetch", "self"]
# Subject words: each message's subject has three of them, so a word is in about 1 in 170.
WORDS = [
    f"{stem}{n}" for stem in ("spring", "sale", "invoice", "news", "update") for n in range(100)
]
DELIVERED_SHARE = 9  # of 10 copies are delivered; the rest stay queued (the pixel tokens)

BARE = r"""
import sys
from aiohttp import web
PAGE = b"x" * int(sys.argv[2])
async def page(request):
    return web.Response(body=PAGE, content_type="text/html")
app = web.Application()
app.router.add_get("/", page)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

CONFIG = """
[smtp]
listen = "127.0.0.1:{smtp}"
[tracking]
listen = "127.0.0.1:{tracking}"
base_url = "http://127.0.0.1:{tracking}"
[admin]
listen = "127.0.0.1:{admin}"
token = "bench-token"
# The fan-out test holds --feeds streams from one address (the default cap is 64).
max_connections_per_address = 1024
max_connections = 2048
[store]
path = "{db}"
"""


def synthetic_events(
    copies: list[tuple[str, int, str, float]], count: int, now: float
) -> Iterator[Event]:
    """``count`` opens and clicks over the copies, roughly in time order, like real traffic."""
    rng = random.Random(7)
    for i in range(count):
        near = i * len(copies) // count + rng.randrange(-50, 50)  # in time order: locality
        message_id, copy_id, recipient, sent = copies[max(0, min(near, len(copies) - 1))]
        at = min(now, sent + rng.expovariate(1 / 7200))
        if i % 4 == 3:
            yield Event(
                "click",
                copy_id,
                message_id,
                recipient,
                at,
                "198.51.100.7",
                "Firefox",
                klass=rng.choice(CLASSES),
                url="https://example.com/offer",
                link_index=0,
            )
        else:
            yield Event(
                "open",
                copy_id,
                message_id,
                recipient,
                at,
                "198.51.100.7",
                "Thunderbird",
                klass=rng.choice(CLASSES),
            )


def subject_of(i: int) -> str:
    words = (
        WORDS[i % len(WORDS)],
        WORDS[(i * 7 + 3) % len(WORDS)],
        WORDS[(i * 13 + 5) % len(WORDS)],
    )
    return f"{words[0].title()} {words[1]} and {words[2]}: offer {i} <b>this week</b>"


def tags_of(i: int, tags: int) -> tuple[str, ...]:
    """One campaign tag of ``tags`` for each message, and a second one for every third."""
    first = f"campaign-{i % tags}"
    return (first, f"campaign-{(i * 11 + 1) % tags}") if i % 3 == 0 else (first,)


def fill(db: Path, messages: int, events: int, tags: int) -> None:
    started, now = time.monotonic(), time.time()
    copies: list[tuple[str, int, str, float]] = []
    with BulkLoader(str(db)) as load:
        for i in range(messages):
            sent = now - DAYS * 86400 + i * (DAYS * 86400 / messages)
            rcpts = (f"user{i % 20000}@example.net", f"user{(i * 7) % 20000}@example.org")
            msg = NewMessage(
                mail_from=SENDERS[i % len(SENDERS)],
                rcpt_tos=rcpts,
                raw=b"Subject: x\r\n\r\nx",
                received_at=sent,
                client_addr="127.0.0.1",
                auth_user=None,
                sender=SENDERS[i % len(SENDERS)],
                subject=subject_of(i),
                message_id_header=f"<{i}@example.com>",
                decision=TrackingDecision(opens=True, clicks=True),
                tags=tags_of(i, tags),
            )
            message_id, ids = load.add_message(msg, [CopySpec(r, (r,)) for r in rcpts])
            for copy_id, rcpt in zip(ids, rcpts, strict=True):
                load.add_links(copy_id, ["https://example.com/offer"])
                copies.append((message_id, copy_id, rcpt, sent))
        load.add_events(synthetic_events(copies, events, now))
        load.deliver(
            [
                (copy_id, sent + 5)
                for n, (_, copy_id, _, sent) in enumerate(copies)
                if n % 10 < DELIVERED_SHARE
            ]
        )
    print(
        f"filled {messages} messages, {events} events, {tags} tags"
        f" in {time.monotonic() - started:.0f} s"
    )


async def timed(
    session: aiohttp.ClientSession, urls: Callable[[], str], n: int
) -> tuple[float, float, int]:
    """p50 and p95 in ms over n sequential GETs, and the size of the last answer."""
    times, size = [], 0
    for _ in range(n):
        start = time.perf_counter()
        async with session.get(urls(), headers=AUTH) as resp:
            body = await resp.read()
            assert resp.status == 200, (resp.status, resp.url)
        times.append((time.perf_counter() - start) * 1000)
        size = len(body)
    q = statistics.quantiles(times, n=20)
    return statistics.median(times), q[18], size


async def message_ids(session: aiohttp.ClientSession, admin: str, pages: int) -> list[str]:
    ids, cursor = [], ""
    for _ in range(pages):
        url = f"{admin}/api/messages?limit=500" + (f"&cursor={cursor}" if cursor else "")
        async with session.get(url, headers=AUTH) as resp:
            body = await resp.json()
        ids += [m["id"] for m in body["messages"]]
        cursor = body["next"] or ""
    return ids


async def feed_client(url: str, counts: list[int], slot: int, ready: asyncio.Event) -> None:
    """One live feed: counts ``event:`` lines until cancelled.

    Counted in whole chunks (bytes.count, not a Python loop per line), so the
    100 clients in this one process keep up with what the server sends.
    """
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url, headers=AUTH) as resp:
            assert resp.status == 200, resp.status
            ready.set()
            tail = b""
            async for chunk in resp.content.iter_any():
                seen = tail + chunk
                counts[slot] += seen.count(b"\nevent:")
                tail = seen[-(len(b"\nevent:") - 1) :]  # too short to hold a whole match


async def pixel_burst(tracking: str, tokens: list[str], rate: int, seconds: float) -> int:
    """Pixel GETs paced at ``rate`` per second; returns how many were answered 200."""
    answered = 0
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def hit(token: str) -> None:
            nonlocal answered
            async with session.get(f"{tracking}/o/{token}.gif") as resp:
                await resp.read()
                answered += resp.status == 200

        tasks, start = [], time.monotonic()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(hit(tokens[i % len(tokens)])))
        await asyncio.gather(*tasks)
        print(f"  sent {len(tasks)} pixels in {time.monotonic() - start:.2f} s")
    return answered


async def fan_out(admin: str, tracking: str, tokens: list[str], args: argparse.Namespace) -> None:
    counts = [0] * args.feeds
    readies = [asyncio.Event() for _ in range(args.feeds)]
    url = f"{admin}/api/events/stream?type=open"
    clients = [
        asyncio.create_task(feed_client(url, counts, i, readies[i])) for i in range(args.feeds)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    before = await stored_opens(args.db_path, 0)
    answered = await pixel_burst(tracking, tokens, args.rate, args.seconds)
    await asyncio.sleep(1.5)  # the last group commit
    stored = await stored_opens(args.db_path, before)
    for _ in range(75):  # up to 15 s for the last events to arrive
        if min(counts) >= stored:
            break
        await asyncio.sleep(0.2)
    for client in clients:
        client.cancel()
    ended = await asyncio.gather(*clients, return_exceptions=True)
    errors = {repr(e) for e in ended if not isinstance(e, asyncio.CancelledError)}
    if errors:
        print(f"  feeds that ended early: {errors}")
    full = sum(1 for c in counts if c >= stored)
    print(f"SSE fan-out: {args.feeds} feeds; {answered} pixels answered at {args.rate}/s,")
    print(f"  {stored} open events stored (the others: not counted by the labelling rules)")
    print(
        f"  received per feed min {min(counts)} median {statistics.median(counts):.0f}"
        f" max {max(counts)}; feeds that got every event: {full}/{args.feeds}"
    )


async def pages(admin: str, args: argparse.Namespace) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{admin}/", headers=AUTH) as resp:
            size = len(await resp.read())
        base_port = free_port()
        bare = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BARE, str(base_port), str(size)
        )
        try:
            await asyncio.to_thread(wait_port, base_port)
            ids = await message_ids(session, admin, 4)
            rng = random.Random(3)
            rows = [
                ("messages list", await timed(session, lambda: f"{admin}/", args.requests)),
                (
                    "message page",
                    await timed(
                        session, lambda: f"{admin}/messages/{rng.choice(ids)}", args.requests
                    ),
                ),
                (
                    "list, one sender",
                    await timed(
                        session, lambda: f"{admin}/?sender={rng.choice(SENDERS)}", args.requests
                    ),
                ),
                ("14-day chart", await timed(session, lambda: f"{admin}/charts", args.requests)),
                (
                    "baseline (static)",
                    await timed(session, lambda: f"http://127.0.0.1:{base_port}/", args.requests),
                ),
            ]
        finally:
            bare.terminate()
            await bare.wait()
    base = rows[-1][1][0]
    print(f"{'page':<18} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>8} {'p50 / baseline':>15}")
    for name, (p50, p95, n) in rows:
        print(f"{name:<18} {p50:8.1f} {p95:8.1f} {n:8d} {p50 / base:14.1f}x")


async def search(admin: str, args: argparse.Namespace) -> None:
    """The JSON API's search and tags: p50 and p95 against the issue's targets."""
    rng = random.Random(5)
    since = int(time.time() - DAYS * 86400)

    def recipient() -> str:
        return f"{admin}/api/messages?recipient=user{rng.randrange(20000)}@example.net"

    def word() -> str:
        return f"{admin}/api/messages?q={rng.choice(WORDS)}"

    def tag_report() -> str:
        return f"{admin}/api/tags/campaign-{rng.randrange(args.tags)}?since={since}"

    cases = [  # (name, urls, target p50 in ms)
        ("search: recipient", recipient, 200.0),
        ("search: subject word", word, 200.0),
        ("tag report, 30 days", tag_report, 300.0),
        ("messages with rates", lambda: f"{admin}/api/messages", 200.0),
        ("search: word, no match", lambda: f"{admin}/api/messages?q=nowhere", None),
        ("tags list", lambda: f"{admin}/api/tags", None),
        ("tag's clients, 30 d", lambda: tag_report().replace("?", "/clients?"), None),
    ]
    async with aiohttp.ClientSession() as session:
        rows = [
            (name, await timed(session, urls, args.requests), target)
            for name, urls, target in cases
        ]
    print(f"{'API call':<24} {'p50 ms':>8} {'p95 ms':>8} {'bytes':>8} {'target p50':>11}")
    for name, (p50, p95, n), target in rows:
        verdict = (
            "" if target is None else f"< {target:.0f} " + ("ok" if p50 < target else "MISSED")
        )
        print(f"{name:<24} {p50:8.1f} {p95:8.1f} {n:8d} {verdict:>11}")


async def stored_opens(db: Path, count_from: int) -> int:
    """The id of the newest event when count_from is 0, else how many opens came after it."""
    store = open_store(StoreConfig(path=str(db)))
    await store.open()
    try:
        since, n = count_from, 0
        while page := await store.list_events(since, "open", None, 1000):
            since, n = page[-1].id or since, n + len(page)
            if count_from == 0 and len(page) < 1000:
                return since
    finally:
        await store.close()
    return since if count_from == 0 else n


async def tokens_for(db: Path, count: int) -> list[str]:
    store = open_store(StoreConfig(path=str(db)))
    await store.open()
    try:
        codec = TokenCodec(await store.secrets())
        copies = await store.due_copies(time.time() + 86400 * 365, count)  # queued ones
    finally:
        await store.close()
    return [codec.open_token(c.id) for c in copies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tags", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--db", type=Path, help="reuse (or create) this store file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db_path = (args.db or Path(tmp) / "bench.db").resolve()
        if not db.exists():
            fill(db, args.messages, args.events, args.tags)
        tokens = asyncio.run(tokens_for(db, 1000))
        ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
        config = Path(tmp) / "relay.toml"
        config.write_text(CONFIG.format(db=db, **ports), encoding="utf-8")
        log = (Path(tmp) / "relay.log").open("wb")
        relay = subprocess.Popen(
            [sys.executable, "-m", "relay", "http", "--config", str(config)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_port(ports["admin"], 60.0)
            wait_port(ports["tracking"], 60.0)
            admin = f"http://127.0.0.1:{ports['admin']}"
            tracking = f"http://127.0.0.1:{ports['tracking']}"
            asyncio.run(pages(admin, args))
            asyncio.run(search(admin, args))
            asyncio.run(fan_out(admin, tracking, tokens, args))
        finally:
            relay.terminate()
            relay.wait(30)
            log.close()
            logged = (Path(tmp) / "relay.log").read_bytes()
            print(f"pixels answered before their event was stored: {logged.count(b'store slow')}")
            print(f"live feeds dropped for falling behind: {logged.count(b'live feed dropped')}")


if __name__ == "__main__":
    main()
