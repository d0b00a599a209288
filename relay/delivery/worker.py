"""The delivery worker: due copies -> per-copy rewrite -> upstream -> outcome.

The store is the queue, shared by any number of workers in any number of
processes and hosts: a worker takes due copies with a lease in its own name
(store/sql/leases.py), up to max_connections at a time, renews the leases of the
copies it holds, and recording the outcome ends the lease. A crash or a restart loses nothing: a
dead worker's leases end and its copies are due again, so a copy is sent
twice only when its worker died while sending it. It polls once a second as
well as on wake(), so copies spooled by another process are picked up too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time

from relay.core.config import Config, UpstreamConfig
from relay.core.metrics import DeliveryMetrics
from relay.core.models import Copy, CopyPart, DeliveryOutcome, Message
from relay.core.store import DELIVERER_LEASE, Store, holder_name
from relay.core.tasks import cancel_and_wait
from relay.core.tokens import TokenCodec
from relay.delivery.bounce import BounceSender
from relay.delivery.copies import RewriteTemplates, build_copy
from relay.delivery.recent import RecentMessages
from relay.delivery.recipients import answered_apart
from relay.delivery.signing import sign_copy
from relay.delivery.upstream import Upstream, describe
from relay.dkim import DkimSigner

log = logging.getLogger("relay.delivery")

POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 30.0  # longest stop() waits for copies in flight
# A copy's lease (upstream.lease_time) is renewed every third of it while in flight, so
# only a worker that died (or lost the store that long) loses its copies when it ends. A
# copy whose outcome could not be recorded also rests until its lease ends.


def worker_name() -> str:
    """A lease holder's name: the host and process, and a nonce for this worker."""
    return holder_name(secrets.token_hex(3))


def retry_at(config: UpstreamConfig, attempts: int, received_at: float, now: float) -> float | None:
    """When to try a deferred copy again (the schedule's last step repeats), or None to bounce.

    The last try is pulled in to the moment the message reaches max_queue_age,
    so the age limit is met exactly rather than up to one interval late.
    """
    expires = received_at + config.max_queue_age
    if now >= expires:
        return None
    schedule = config.retry_schedule or (300.0,)
    delay = schedule[min(max(attempts, 0), len(schedule) - 1)]
    return min(now + delay, expires)


class DeliveryWorker:
    def __init__(
        self,
        config: Config,
        store: Store,
        codec: TokenCodec,
        upstream: Upstream,
        signer: DkimSigner | None = None,  # from signing.open_signer when [dkim] is set
        metrics: DeliveryMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.codec = codec
        self.upstream = upstream
        self.signer = signer
        self.metrics = metrics
        self.owner = worker_name()
        self.bounces = BounceSender(config, store, upstream, metrics, self.owner)
        self.messages = RecentMessages(store)
        self.templates = RewriteTemplates()
        self._slots = max(1, config.upstream.max_connections)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        # Copies in flight whose send is over and whose outcome is being written: they
        # hold no upstream connection, so they do not count against the slots.
        self._recording: set[int] = set()
        # Copies taken but not started: a claim takes max_connections copies at once, so
        # a worker writes one claim per max_connections copies, not one per copy (every
        # write of every process on a SQLite file takes turns on its one lock).
        self._ready: collections.deque[Copy] = collections.deque()
        self._more_due = False
        # The claim in flight, run beside the copies: the next copies are taken (and their
        # messages read) while the last ones are sent, so no connection waits for a claim.
        self._claiming: asyncio.Task[None] | None = None
        self.lease = config.upstream.lease_time
        self._renewing: asyncio.Task[None] | None = None
        self._name_lease = DELIVERER_LEASE + self.owner
        self._backlog = False
        self._stopping = False

    async def start(self) -> None:
        if self._task is None:
            with contextlib.suppress(Exception):  # the store may be down: _renew tries again
                await self.store.take_lease(self._name_lease, self.owner, self.lease)
            self._task = asyncio.create_task(self._run(), name="delivery-worker")
            self._renewing = asyncio.create_task(self._renew(), name="delivery-leases")
            self.bounces.start()

    def wake(self) -> None:
        """Called by the SMTP front after a spool, so delivery starts at once."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop taking copies; finish the ones in flight (bounded), then close the upstream."""
        self._stopping = True
        await cancel_and_wait(self._task)
        if self._claiming is not None:  # its copies are given back below with the ready ones
            await asyncio.gather(self._claiming, return_exceptions=True)
        tasks = list(self._inflight.values())
        if tasks:
            # One step's timeout plus a little: a copy mid-reply usually finishes in it.
            grace = min(self.config.upstream.timeout + 5.0, STOP_GRACE_SECONDS)
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            cut = [cid for cid, task in self._inflight.items() if task in pending]
            for task in pending:
                log.warning("stopping: copy still in flight, it will be retried")
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        else:
            cut = []
        cut.extend(copy.id for copy in self._ready)
        self._ready.clear()
        if cut:
            with contextlib.suppress(Exception):  # else its lease ends in lease_time
                await self.store.release_copies(self.owner, cut)
        await cancel_and_wait(self._renewing)
        await self.bounces.stop()
        with contextlib.suppress(Exception):
            await self.store.drop_lease(self._name_lease, self.owner)
        await self.upstream.close()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._take_due()
            except Exception:  # the store may be briefly down; the queue is still there
                log.exception("could not fetch due copies")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()

    async def _take_due(self) -> None:
        """Start copies, up to max_connections in flight, a task for each, from those
        taken with a lease; take more (up to max_connections at a time, in a task beside
        the copies) once at most half a claim's worth is left and the last claim was full,
        or when none is left."""
        # A copy whose outcome is being written holds no connection, so it frees its slot
        # (at most max_connections such copies); it keeps its lease until the outcome.
        free = self._slots - len(self._inflight) + min(len(self._recording), self._slots)
        while free > 0 and self._ready:
            copy = self._ready.popleft()
            task = asyncio.create_task(self._deliver_guarded(copy), name=f"copy-{copy.id}")
            self._inflight[copy.id] = task
            free -= 1
        low = len(self._ready) <= self._slots // 2 and self._more_due
        if self._claiming is None and not self._stopping and (low or not self._ready):
            self._claiming = asyncio.create_task(self._claim(), name="delivery-claim")
        # the next free slot asks at once
        self._backlog = self._more_due or bool(self._ready) or self._claiming is not None

    async def _claim(self) -> None:
        try:
            due = await self.store.claim_copies(self.owner, time.time(), self.lease, self._slots)
        except Exception:  # the store may be briefly down; the queue is still there
            log.exception("could not fetch due copies")
            return
        finally:
            self._claiming = None
        self._ready.extend(due)
        self._more_due = len(due) >= self._slots  # a full claim: maybe more are due
        for message_id in dict.fromkeys(copy.message_id for copy in due):
            self.messages.prefetch(message_id)
        if due:
            self._wake.set()

    async def _renew(self) -> None:
        """Keep the leases of the copies held, however long their sends take."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.store.take_lease(self._name_lease, self.owner, self.lease)
                held = [*self._inflight, *(copy.id for copy in self._ready)]
                await self.store.renew_copies(self.owner, held, self.lease)
            except Exception:  # the store may be briefly down: next time, before they end
                log.exception("could not renew the leases of copies in flight")

    async def _deliver_guarded(self, copy: Copy) -> None:
        """A bug in one copy must not stop the worker: log it and defer the copy."""
        try:
            await self.deliver_copy(copy)
        except Exception as exc:
            log.exception("copy %s: delivery failed with an internal error", copy.id)
            await self._defer_after_error(copy, exc)
        finally:
            self._inflight.pop(copy.id, None)
            self._recording.discard(copy.id)
            if self._backlog:
                self._wake.set()

    async def deliver_copy(self, copy: Copy) -> None:
        """Rewrite this copy for its recipient, relay it and record the outcome."""
        loaded = await self.messages.get(copy.message_id)
        if loaded is None:
            log.error("copy %s: message %s is not in the spool", copy.id, copy.message_id)
            lost = DeliveryOutcome("permanent", "message missing from the spool")
            await self.store.record_outcome(copy.id, lost, None)
            return
        message, raw = loaded
        rewritten = await build_copy(self.config, self.codec, copy, message, raw, self.templates)
        rewritten = await sign_copy(self.signer, raw, rewritten, message.decision)
        started = time.monotonic()
        outcome = await self.upstream.send(message.mail_from, copy.rcpt_tos, rewritten.raw)
        if self.metrics is not None:
            self.metrics.upstream_attempt(time.monotonic() - started)
        self._recording.add(copy.id)
        if self._backlog:  # its slot is free for the next copy while the outcome is written
            self._wake.set()
        # The links the rewrite made are recorded with the outcome, in the same write: one
        # write per copy, not two. (A click never needs them: its URL is in its token.)
        links = list(rewritten.links) or None
        await self._record(copy, message.received_at, outcome, "; ".join(rewritten.notes), links)

    async def _record(
        self,
        copy: Copy,
        received_at: float,
        outcome: DeliveryOutcome,
        note: str,
        links: list[str] | None = None,
    ) -> None:
        if outcome.refused and copy.recipient is None:
            await self._record_parts(copy, received_at, outcome, note, links)
            return
        outcome, next_at = self._schedule(copy, received_at, outcome)
        await self.store.record_outcome(copy.id, outcome, next_at, note, links)
        _log_outcome(copy.id, copy.rcpt_tos, outcome, next_at, received_at)
        self._counted(outcome)

    async def _record_parts(
        self,
        copy: Copy,
        received_at: float,
        outcome: DeliveryOutcome,
        note: str,
        links: list[str] | None,
    ) -> None:
        """A shared copy whose recipients were answered apart: one part per outcome."""
        parts: list[CopyPart] = []
        for group in answered_apart(copy.rcpt_tos, outcome):
            settled, next_at = self._schedule(copy, received_at, group.outcome)
            replies = group.replies
            if settled is not group.outcome:  # given up: each reply says so too
                replies = {a: self._gave_up(reply) for a, reply in replies.items()}
            parts.append(CopyPart(group.rcpt_tos, settled, next_at, replies))
        if len(parts) == 1 and not parts[0].replies:
            await self.store.record_outcome(
                copy.id, parts[0].outcome, parts[0].next_attempt_at, note, links
            )
            ids = [copy.id]
        else:
            ids = await self.store.record_parts(copy.id, parts, note, links)
        for copy_id, part in zip(ids, parts, strict=True):
            _log_outcome(copy_id, part.rcpt_tos, part.outcome, part.next_attempt_at, received_at)
            self._counted(part.outcome)

    def _schedule(
        self, copy: Copy, received_at: float, outcome: DeliveryOutcome
    ) -> tuple[DeliveryOutcome, float | None]:
        """A temporary failure's next attempt, or a bounce once the queue age is reached."""
        if outcome.status != "temporary":
            return outcome, None
        next_at = retry_at(self.config.upstream, copy.attempts, received_at, time.time())
        if next_at is None:
            return DeliveryOutcome("permanent", self._gave_up(outcome.reply)), None
        return outcome, next_at

    def _gave_up(self, reply: str) -> str:
        age = self.config.upstream.max_queue_age
        return f"gave up after {age:.0f}s in the queue; last reply: {reply}"

    def _counted(self, outcome: DeliveryOutcome) -> None:
        """A recorded outcome: a bounce wakes the bounce sender; the metrics count it."""
        if outcome.status == "permanent":
            self.bounces.wake()
        if self.metrics is not None:
            kind = {"delivered": "delivered", "temporary": "deferred"}.get(outcome.status)
            self.metrics.delivery(kind or "bounced")

    async def _defer_after_error(self, copy: Copy, exc: Exception) -> None:
        outcome = DeliveryOutcome("temporary", f"internal error: {describe(exc)}")
        try:
            message: Message | None = await self.store.get_message(copy.message_id)
            received_at = message.received_at if message else time.time()
            await self._record(copy, received_at, outcome, "")
        except Exception:
            log.exception("copy %s: could not record the failure; its lease holds it", copy.id)


def _log_outcome(
    copy_id: int,
    rcpts: tuple[str, ...],
    outcome: DeliveryOutcome,
    next_at: float | None,
    received_at: float,
) -> None:
    """One line per attempt, as Postfix's smtp(8) writes one: the copy, its recipients, the
    delay since the message was received, what became of it, the upstream's queue id and
    reply."""
    now = time.time()
    to = ",".join(f"<{r}>" for r in rcpts)
    upstream_id = f" upstream_id={outcome.queue_id}" if outcome.queue_id else ""
    line = f"copy={copy_id} to={to} delay={now - received_at:.2f}s{upstream_id}"
    if outcome.status == "delivered":
        log.info("%s status=delivered reply=%r", line, outcome.reply)
    elif outcome.status == "permanent":
        log.warning("%s status=bounced reply=%r", line, outcome.reply)
    else:
        wait = (next_at or now) - now
        log.info("%s status=deferred retry_in=%.0fs reply=%r", line, wait, outcome.reply)
