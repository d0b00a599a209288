"""Flow control: while arrivals outrun deliveries the reply to DATA is held, longer the
further they outrun them, never beyond smtp.flow_delay; 452 stays the last resort.

Real store files and real sockets; the controller is also driven directly with the
queue counts a store would report, to see it settle, fall back and stay bounded.
"""

from __future__ import annotations

import asyncio
import itertools
import smtplib
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from smtp.running import StartRelay, in_thread, smtp_config
from support.stores import open_sqlite

from relay.core.config import Config
from relay.core.metrics import Metrics
from relay.core.models import DeliveryOutcome
from relay.smtp import backpressure
from relay.smtp.backpressure import REFRESH_SECONDS, SpoolGuard
from relay.smtp.server import start_smtp

MESSAGE = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: s\r\n\r\nhello\r\n"


class CountedQueue:
    """Stands in for the store's count only (the other tests use the real one)."""

    def __init__(self) -> None:
        self.queued = 0

    async def count_queued(self) -> int:
        return self.queued


def guard(max_delay: float = 1.0, limit: int = 100_000) -> tuple[SpoolGuard, CountedQueue]:
    queue = CountedQueue()
    config = smtp_config(flow_delay=max_delay, max_queued_copies=limit)
    return SpoolGuard(config, queue, Metrics()), queue  # type: ignore[arg-type]


def flow_delay(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("relay_smtp_flow_delay_seconds")
    assert value is not None
    return value


def second(g: SpoolGuard, queue: CountedQueue, t: float, arrivals: int, deliveries: int) -> None:
    """One recount's worth of traffic: arrivals spooled, deliveries gone from the queue."""
    for _ in range(arrivals):
        g.spooled(1)
    queue.queued = max(0, queue.queued + arrivals - deliveries)
    # A recount, as the first session of each REFRESH_SECONDS makes, at simulated time t.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backpressure, "time", SimpleNamespace(monotonic=lambda: t))
        asyncio.run(g.queue_full())


def test_delay_grows_while_arrivals_outrun_deliveries_and_stays_bounded() -> None:
    g, queue = guard(max_delay=1.0)
    queue.queued = 2000  # above the floor (1000)
    delays = []
    for t in range(60):
        second(g, queue, float(t), arrivals=400, deliveries=100)  # arrivals 4x deliveries
        delays.append(g.delay)
    assert delays[2] > 0
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert max(delays) == 1.0  # held at the bound, never past it
    assert g.metrics is not None and flow_delay(g.metrics) == 1.0


def test_delay_is_proportional_to_the_excess() -> None:
    """After the same time, a small excess has moved the delay less than a large one."""
    small, q_small = guard()
    large, q_large = guard()
    q_small.queued = q_large.queued = 5000
    for t in range(5):
        second(small, q_small, float(t), arrivals=110, deliveries=100)
        second(large, q_large, float(t), arrivals=300, deliveries=100)
    assert 0 < small.delay < large.delay


def test_delay_settles_where_arrivals_match_deliveries() -> None:
    """A simulated sender: 4 sessions, 10 ms per message of their own, plus the delay;
    deliveries 100 messages a second. Arrivals settle near 100/s and the queue stays put."""
    g, queue = guard()
    queue.queued = 1500
    rates, depths = [], []
    for t in range(120):
        arrivals = round(4 / (0.010 + g.delay))
        second(g, queue, float(t), arrivals=arrivals, deliveries=100)
        rates.append(arrivals)
        depths.append(queue.queued)
    assert all(80 <= r <= 125 for r in rates[-60:])
    assert max(depths) < 5000
    assert 0.02 < g.delay < 0.05  # 4 sessions / 100 per second - 10 ms


def test_delay_falls_back_when_deliveries_catch_up_or_the_queue_is_short() -> None:
    g, queue = guard()
    queue.queued = 3000
    for t in range(10):
        second(g, queue, float(t), arrivals=400, deliveries=100)
    held = g.delay
    for t in range(10, 14):
        second(g, queue, float(t), arrivals=100, deliveries=400)  # the queue shrinks
    assert g.delay < held / 2
    queue.queued = 10  # below the floor: no reason to hold anyone
    for t in range(14, 30):
        second(g, queue, float(t), arrivals=10, deliveries=10)
    assert g.delay == 0.0


def test_flow_delay_zero_never_holds() -> None:
    g, queue = guard(max_delay=0.0)
    queue.queued = 5000
    for t in range(20):
        second(g, queue, float(t), arrivals=400, deliveries=0)
    assert g.delay == 0.0


def send_timed(port: int) -> tuple[int, float]:
    """(DATA's reply code, seconds from the end of the message to the reply)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        code, _ = client.mail("a@example.com")
        if code != 250:
            return code, 0.0
        client.rcpt("b@example.net")
        client.rcpt("c@example.net")
        started = time.monotonic()
        code, _ = client.data(MESSAGE)
        return code, time.monotonic() - started


async def test_over_smtp_replies_slow_down_then_452_at_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing delivers: every arrival stays. The DATA replies get slower (bounded by
    flow_delay), the gauge shows the delay, and at max_queued_copies MAIL gets 452.
    Recounts every 50 ms instead of every second, so the test takes seconds."""
    monkeypatch.setattr(backpressure, "REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(backpressure, "WINDOW_SECONDS", 0.2)
    store = await open_sqlite(tmp_path / "relay.db")
    metrics = Metrics()
    config = Config(smtp=smtp_config(max_queued_copies=100_000, flow_delay=0.3))
    servers = await start_smtp(config, store, lambda: None, metrics=metrics)
    port = servers.addresses()[0][1]
    try:
        timings: list[float] = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and sum(t > 0.25 for t in timings) < 5:
            code, took = await in_thread(send_timed, port)
            assert code == 250
            timings.append(took)
        assert timings[0] < 0.1  # an empty queue holds no one
        assert sum(t > 0.25 for t in timings) == 5  # held back while the queue grew
        assert max(timings) < 0.3 + 0.2  # never much past flow_delay
        assert flow_delay(metrics) > 0.25
        # The last resort: the queue at max_queued_copies refuses at MAIL.
        limited = Config(smtp=smtp_config(max_queued_copies=await store.count_queued()))
        full = await start_smtp(limited, store, lambda: None, metrics=metrics)
        try:
            code, _ = await in_thread(send_timed, full.addresses()[0][1])
            assert code == 452
        finally:
            await full.close(grace=1.0)
    finally:
        await servers.close(grace=1.0)
        await store.close()


async def test_over_smtp_no_delay_while_deliveries_keep_up(start_relay: StartRelay) -> None:
    """Copies delivered as fast as they arrive: however many messages, no reply is held."""
    relay = await start_relay(max_queued_copies=40, flow_delay=0.5)  # floor 4 copies
    timings = []
    for _ in range(int(4 / REFRESH_SECONDS) * 4):
        code, took = await in_thread(send_timed, relay.port)
        assert code == 250
        timings.append(took)
        for copy in await relay.store.due_copies(time.time() + 3600, 100):
            await relay.store.record_outcome(copy.id, DeliveryOutcome("delivered", "250"), None)
        await asyncio.sleep(0.2)
    assert max(timings) < 0.1
