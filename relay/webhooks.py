"""Webhooks (SPEC 8): empty the store's durable outbox into signed POSTs.

Every open, click, reply and delivery outcome is queued by the store in the
write that records it (store/sql/outbox.py), whichever process records it, so
one dispatcher, run by the HTTP role, serves a split deployment too. Each
round it fans new notices out to the endpoints whose ``events`` want them,
claims due rows with a lease and POSTs them concurrently. A failure is
retried with exponential backoff (30 s doubling, at most an hour apart)
until a day has passed, then kept as failed. A row is deleted only after
a 2xx, and a crash leaves claimed rows to come due again: at least once,
across restarts. None of this runs in a request: a dead endpoint never
slows a pixel or a redirect.

Signatures follow Standard Webhooks: ``webhook-signature: v1,<base64 of
HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>``. A secret
written ``whsec_<base64>`` is that base64-decoded key (the format those
libraries generate); any other string is used as its UTF-8 bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Sequence

import aiohttp

from relay.core.config import WebhookConfig
from relay.core.metrics import Metrics
from relay.core.models import WebhookDelivery, WebhookNotice, WebhookTarget, is_machine
from relay.core.store import Store
from relay.core.tasks import cancel_and_wait

log = logging.getLogger("relay.webhooks")

RETRY_BASE = 30.0  # seconds before the first retry; doubles each time
RETRY_MAX = 3600.0
GIVE_UP_AFTER = 86_400.0  # a day
REQUEST_TIMEOUT = 10.0
LEASE = 60.0  # a claimed row is hidden this long; more than a request can take
BATCH = 50
CONCURRENCY = 10
POLL_INTERVAL = 1.0


def signing_key(secret: str) -> bytes:
    """``whsec_<base64>`` is a base64 key (Standard Webhooks); anything else is used as text."""
    if secret.startswith("whsec_"):
        with contextlib.suppress(binascii.Error, ValueError):
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    return secret.encode("utf-8")


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def payload(notice: WebhookNotice) -> bytes:
    """The Standard Webhooks envelope: type, timestamp, and the event under data."""
    data = {
        "event_id": notice.event_id,
        "message_id": notice.message_id,
        "recipient": notice.recipient,
        "at": iso(notice.at),
        "url": notice.url or None,
        "class": notice.klass,
        "is_machine": is_machine(notice.klass, notice.inferred),
        "inferred": notice.inferred,
        "first": notice.first,
        "reasons": list(notice.reasons),
    }
    if notice.klass is None:  # a delivery outcome
        data |= {"reply": notice.reply, "attempts": notice.attempts}
    body = {"type": notice.kind, "timestamp": iso(notice.at), "data": data}
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def next_attempt(attempts: int, created_at: float, now: float) -> float | None:
    """When to try again after ``attempts`` failures; None once a day has passed."""
    deadline = created_at + GIVE_UP_AFTER
    if now >= deadline:
        return None
    delay = min(RETRY_BASE * 2.0 ** min(attempts, 20), RETRY_MAX) * random.uniform(0.8, 1.2)  # noqa: S311
    return min(now + delay, deadline)


class WebhookDispatcher:
    """The outbox's one consumer per HTTP process; ``run_once`` is one round (tests call it)."""

    def __init__(
        self,
        webhooks: Sequence[WebhookConfig],
        store: Store,
        metrics: Metrics | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._targets = [WebhookTarget(w.url, w.events) for w in webhooks]
        self._keys = {w.url: signing_key(w.secret) for w in reversed(webhooks)}  # first wins
        self._store = store
        self._metrics = metrics
        self._poll = poll_interval
        self.retry = next_attempt
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def reconfigure(self, webhooks: Sequence[WebhookConfig]) -> None:
        """SIGHUP: the endpoints, their events and secrets from the new config."""
        self._targets = [WebhookTarget(w.url, w.events) for w in webhooks]
        self._keys = {w.url: signing_key(w.secret) for w in reversed(webhooks)}
        await self._store.want_webhooks(bool(self._targets))

    async def start(self, background: bool = True) -> None:
        """Open the HTTP client and, unless told not to, run rounds every poll_interval.

        The store queues events for webhooks only while some endpoint is configured:
        a relay without webhooks writes no queue row per event.
        """
        await self._store.want_webhooks(bool(self._targets))
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            headers={"User-Agent": "relay-webhooks"},
        )
        if background:
            self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Rows in flight stay claimed and come due again after the lease."""
        await cancel_and_wait(self._task)
        if self._session is not None:
            await self._session.close()

    async def run_once(self) -> int:
        """Fan out what is queued, then POST what is due; returns how many were delivered."""
        while await self._store.queue_webhooks(self._targets) > 0:
            pass
        due = await self._store.claim_webhooks(time.time(), LEASE, BATCH)
        if not due:
            return 0
        limit = asyncio.Semaphore(CONCURRENCY)

        async def send(delivery: WebhookDelivery) -> bool:
            async with limit:
                return await self._deliver(delivery)

        results = await asyncio.gather(*(send(d) for d in due))
        return sum(results)

    async def _run(self) -> None:
        while True:
            try:
                delivered = await self.run_once()
            except Exception:  # the store may be away for a while; rows wait in it
                log.warning("webhooks: cannot reach the outbox", exc_info=True)
                delivered = 0
            if not delivered:
                await asyncio.sleep(self._poll)

    async def _deliver(self, delivery: WebhookDelivery) -> bool:
        key = self._keys.get(delivery.endpoint)
        if key is None:
            log.warning(
                "webhook %s: %s is no longer configured", delivery.webhook_id, delivery.endpoint
            )
            await self._store.settle_webhook(delivery.id, False, "endpoint no longer configured")
            return False
        error = await self._post(delivery, key)
        if error is None:
            await self._store.settle_webhook(delivery.id, True)
            if self._metrics is not None:
                self._metrics.webhook_deliveries.inc()
            return True
        retry_at = self.retry(delivery.attempts + 1, delivery.created_at, time.time())
        if self._metrics is not None:
            self._metrics.webhook_failures.labels(final=str(retry_at is None).lower()).inc()
        log.info("webhook %s to %s failed: %s", delivery.webhook_id, delivery.endpoint, error)
        await self._store.settle_webhook(delivery.id, False, error, retry_at)
        return False

    async def _post(self, delivery: WebhookDelivery, key: bytes) -> str | None:
        """None on a 2xx answer, else what went wrong. Redirects are not followed."""
        assert self._session is not None, "start() first"
        body = payload(delivery.notice)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(key, delivery.webhook_id, timestamp, body),
        }
        try:
            async with self._session.post(
                delivery.endpoint, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
