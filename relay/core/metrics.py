"""Prometheus metrics: one Metrics object per process, shared by every part of it.

The collectors live in a registry of their own (not prometheus_client's global
one), so tests and several relays in one process never see each other's
counts. Queue depth is read from the store at scrape time, so it is right in a
split deployment too, where the HTTP process never delivers anything.

To add metrics, add attributes in __init__ registered with ``registry=self.registry``;
a Gauge names its ``multiprocess_mode``, how the values of several processes combine
("livemax": the gauges here are set by the main process only, at scrape time, but
for the flow delay).

With SMTP or tracking workers (relay/workers.py) the counters of every process
are summed with prometheus_client's multi-process mode: share_across_processes
in the main process before anything starts, Metrics(shared=...) there to scrape.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from relay.core.store import DELIVERER_LEASE, Store, StoreUnavailable

# An HTTP answer: a pixel takes well under a millisecond, a dashboard page some more.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Upstream replies take from a few milliseconds (loopback) to the upstream timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REFUSAL_REASONS = (
    "auth_required",
    "relay_denied",
    "sender_not_allowed",
    "too_big",
    "too_many_recipients",
    "queue_full",
    "storage_error",
    "malformed_header",
    "bad_address",
    "session_limit",
)
DELIVERY_OUTCOMES = ("delivered", "deferred", "bounced")
# bad_credentials: 535; address_limit, user_limit: 454, the failure budget used up.
AUTH_FAILURE_REASONS = ("bad_credentials", "address_limit", "user_limit")


class DeliveryMetrics(Protocol):
    """The counters the delivery worker moves: Metrics itself, or a delivery process's
    report to its parent's Metrics (delivery/child.py)."""

    def delivery(self, outcome: str) -> None: ...

    def upstream_attempt(self, seconds: float) -> None: ...

    def bounce_sent(self) -> None: ...


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own
T = TypeVar("T")


def share_across_processes() -> str:
    """prometheus_client's multi-process mode, for this process and every process it
    starts from now on (they inherit the variable, which prometheus_client reads when it
    is imported): each process keeps its values in files of its own under the directory
    returned, and Metrics(shared=directory) adds them up at each scrape. A process that
    exits leaves its counts there, so a worker that dies or restarts loses none."""
    path = tempfile.mkdtemp(prefix="relay-metrics-")
    os.environ[MULTIPROCESS_ENV] = path
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return path


def stop_sharing(path: str) -> None:
    """At exit, once every process that wrote there has ended."""
    shutil.rmtree(path, ignore_errors=True)


async def _unless_unavailable(reading: Awaitable[T]) -> T | None:
    """A figure read from the store at scrape time; None while the store is away (the
    counters are still worth a scrape)."""
    try:
        return await reading
    except StoreUnavailable:
        return None


class Metrics:
    """The relay's collectors; every counter starts at 0 for every known label.

    shared: the directory of share_across_processes; /metrics then shows the sum over
    every process of the relay (the process_* and python_* figures stay this one's).
    """

    def __init__(self, shared: str | None = None) -> None:
        self.shared = shared
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposition = self.registry  # what render() writes
        if shared is not None:
            self.exposition = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.exposition, path=shared)  # type: ignore[no-untyped-call]
        # This process's own figures, as prometheus_client's default registry has them:
        # process_* (CPU, memory, open files, start time), python_gc_*, python_info.
        ProcessCollector(registry=self.exposition)
        GCCollector(registry=self.exposition)
        PlatformCollector(registry=self.exposition)
        counter = functools.partial(Counter, registry=self.registry)
        histogram = functools.partial(Histogram, registry=self.registry)
        # A gauge of the whole store, or of each SMTP process: the largest live value.
        live_gauge = functools.partial(Gauge, multiprocess_mode="livemax", registry=self.registry)
        self.http_latency = histogram(
            "relay_http_request_duration_seconds",
            "Time to answer an HTTP request, by listener (tracking, admin) and route template",
            ["listener", "route"],
            buckets=HTTP_BUCKETS,
        )
        self.messages_accepted = counter(
            "relay_messages_accepted", "Messages accepted over SMTP (answered 250)"
        )
        self.messages_refused = counter(
            "relay_messages_refused",
            "Sessions, transactions or messages refused over SMTP, by reason",
            ["reason"],
        )
        self.deliveries = counter(
            "relay_deliveries", "Delivery attempts of copies, by outcome", ["outcome"]
        )
        self.upstream_latency = histogram(
            "relay_upstream_latency_seconds",
            "Time for one delivery attempt to the upstream",
            buckets=LATENCY_BUCKETS,
        )
        self.auth_failures = counter(
            "relay_auth_failures", "SMTP AUTH attempts that failed, by reason", ["reason"]
        )
        self.bounces_sent = counter(
            "relay_bounces_sent", "Delivery status notifications sent to senders"
        )
        self.queue_depth = live_gauge(
            "relay_queue_copies", "Copies in the store by state, read at scrape time", ["state"]
        )
        self.queue_oldest = live_gauge(
            "relay_queue_oldest_seconds",
            "Age of the message of the oldest copy waiting for delivery, read at scrape time",
        )
        self.flow_delay = live_gauge(
            "relay_smtp_flow_delay_seconds",
            "How long the reply to DATA is held while arrivals outrun deliveries",
        )
        self.tracking_events = counter(
            "relay_tracking_events",
            "Opens, clicks and replies recorded by this process, by class",
            ["kind", "class"],
        )
        self.webhook_deliveries = counter(
            "relay_webhook_deliveries", "Webhook POSTs answered with 2xx"
        )
        self.webhook_failures = counter(
            "relay_webhook_failures",
            "Webhook POSTs that failed (retried later), and notices given up after a day",
            ["final"],
        )
        self.delivery_running = live_gauge(
            "relay_delivery_running",
            "1 while some delivery worker, on any node, delivers from this store, else 0",
        )
        self.delivery_workers = live_gauge(
            "relay_delivery_workers",
            "Delivery workers delivering from this store, on every node (their live leases)",
        )
        for kind in ("open", "click"):
            for klass in ("human", "bot", "proxy", "prefetch", "self"):
                self.tracking_events.labels(kind, klass)
        for final in ("false", "true"):
            self.webhook_failures.labels(final=final)
        for reason in REFUSAL_REASONS:
            self.messages_refused.labels(reason=reason)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome=outcome)
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason=reason)

    def process_gone(self, pid: int) -> None:
        """A worker exited: its gauges no longer count (its counters still do)."""
        if self.shared is not None:
            multiprocess.mark_process_dead(pid, self.shared)  # type: ignore[no-untyped-call]

    def refused(self, reason: str) -> None:
        self.messages_refused.labels(reason=reason).inc()

    def auth_failed(self, reason: str) -> None:
        self.auth_failures.labels(reason=reason).inc()

    # DeliveryMetrics: what delivery reports, wherever it runs (delivery/child.py).
    def delivery(self, outcome: str) -> None:
        self.deliveries.labels(outcome=outcome).inc()

    def upstream_attempt(self, seconds: float) -> None:
        self.upstream_latency.observe(seconds)

    def bounce_sent(self) -> None:
        self.bounces_sent.inc()

    async def render(self, store: Store | None) -> tuple[bytes, str]:
        """The exposition text and its content type; queue depth read from store first."""
        if store is not None:
            depth = await _unless_unavailable(store.queue_depth())
            for state, count in (depth or {}).items():
                self.queue_depth.labels(state=state).set(count)
            oldest = await _unless_unavailable(store.oldest_queued())
            self.queue_oldest.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
            workers = await _unless_unavailable(store.live_leases(DELIVERER_LEASE))
            if workers is not None:
                self.delivery_workers.set(workers)
                self.delivery_running.set(1 if workers else 0)
        return generate_latest(self.exposition), CONTENT_TYPE_LATEST
