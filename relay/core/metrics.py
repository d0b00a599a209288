"""Prometheus metrics: one Metrics object per process, shared by every part of it.

The collectors live in a registry of their own (not prometheus_client's global
one), so tests and several relays in one process never see each other's
counts. Queue depth is read from the store at scrape time, so it is right in a
split deployment too, where the HTTP process never delivers anything.

To add metrics, add attributes in __init__ registered with ``registry=self.registry``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from relay.core.store import Store, StoreUnavailable

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


class Metrics:
    """The relay's collectors; every counter starts at 0 for every known label."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # This process's own figures, as prometheus_client's default registry has them:
        # process_* (CPU, memory, open files, start time), python_gc_*, python_info.
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.http_latency = Histogram(
            "relay_http_request_duration_seconds",
            "Time to answer an HTTP request, by listener (tracking, admin) and route template",
            ["listener", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.messages_accepted = Counter(
            "relay_messages_accepted",
            "Messages accepted over SMTP (answered 250)",
            registry=self.registry,
        )
        self.messages_refused = Counter(
            "relay_messages_refused",
            "Messages or transactions refused over SMTP, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relay_deliveries",
            "Delivery attempts of copies, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "relay_upstream_latency_seconds",
            "Time for one delivery attempt to the upstream",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "relay_auth_failures",
            "SMTP AUTH attempts that failed, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.bounces_sent = Counter(
            "relay_bounces_sent",
            "Delivery status notifications sent to senders",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "relay_queue_copies",
            "Copies in the store by state, read at scrape time",
            ["state"],
            registry=self.registry,
        )
        self.queue_oldest = Gauge(
            "relay_queue_oldest_seconds",
            "Age of the message of the oldest copy waiting for delivery, read at scrape time",
            registry=self.registry,
        )
        self.flow_delay = Gauge(
            "relay_smtp_flow_delay_seconds",
            "How long the reply to DATA is held while arrivals outrun deliveries",
            registry=self.registry,
        )
        self.tracking_events = Counter(
            "relay_tracking_events",
            "Opens, clicks and replies recorded by this process, by class",
            ["kind", "class"],
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "relay_webhook_deliveries",
            "Webhook POSTs answered with 2xx",
            registry=self.registry,
        )
        self.webhook_failures = Counter(
            "relay_webhook_failures",
            "Webhook POSTs that failed (retried later), and notices given up after a day",
            ["final"],
            registry=self.registry,
        )
        self.delivery_running = Gauge(
            "relay_delivery_running",
            "1 while a process delivers from this store (holds its delivery lock), else 0",
            registry=self.registry,
        )
        # Set by the CLI: is a deliverer running (None: cannot tell)? Read at each scrape.
        self.delivery_state: Callable[[], bool | None] | None = None
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
            try:
                depth = await store.queue_depth()
            except StoreUnavailable:  # the counters are still worth a scrape
                depth = {}
            for state, count in depth.items():
                self.queue_depth.labels(state=state).set(count)
            try:
                oldest = await store.oldest_queued()
            except StoreUnavailable:
                oldest = None
            self.queue_oldest.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
        if self.delivery_state is not None:
            running = self.delivery_state()
            if running is not None:
                self.delivery_running.set(1 if running else 0)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
