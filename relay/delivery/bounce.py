"""Bounces: one RFC 3464 delivery status notification per bounced copy.

A shared copy whose recipients were answered apart was split by outcome
(delivery.recipients), so its bounced part names exactly the refused
recipients, each with its own reply.

The store writes a pending bounce in the transaction that bounces the copy (a
null sender gets none: "skipped"), so this sender only works through that
durable to-do list: a restart resends what was not yet sent and never makes a
second one. DSNs go out through the upstream with the null envelope sender
(MAIL FROM:<>), so a DSN that cannot be delivered is dropped, never bounced.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence

from relay.core.config import Config
from relay.core.metrics import DeliveryMetrics
from relay.core.models import Copy, Message, PendingBounce
from relay.core.store import Store
from relay.core.tasks import cancel_and_wait
from relay.delivery.upstream import Upstream
from relay.rewrite.headers import head_end

log = logging.getLogger("relay.delivery.bounce")

POLL_SECONDS = 5.0
BATCH = 50
# A bounce is taken with a lease for this long (one at a time: a DSN's send is bounded by
# the upstream's timeouts); a sender that dies leaves it to another after that.
BOUNCE_LEASE_SECONDS = 600.0
RETRY_SECONDS = 300.0
GIVE_UP_SECONDS = 4 * 86400.0
MAX_ORIGINAL_HEADERS = 64 * 1024  # the returned header block is capped (the client sent it)
_STATUS = re.compile(r"^\s*([245])\d\d[ -]+([245]\.\d{1,3}\.\d{1,3})\b")
_CODE = re.compile(r"^\s*([245])\d\d\b")


def status_code(reply: str) -> str:
    """The enhanced status code of the failure: from the reply, else 5.0.0 (4.4.7 on expiry)."""
    found = _STATUS.search(reply)
    if found:
        return found.group(2)
    return "4.4.7" if reply.startswith("gave up after") else "5.0.0"


def _ascii(text: str) -> str:
    """One printable ASCII line: DSN fields and the text part stay 7-bit."""
    return "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))


def _address_field(address: str) -> str:
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {_ascii(address)}"


def recipient_fields(rcpt: str, reply: str, at: float) -> list[str]:
    """The per-recipient block of message/delivery-status (RFC 3464 2.3)."""
    fields = [
        f"Final-Recipient: {_address_field(rcpt)}",
        "Action: failed",
        f"Status: {status_code(reply)}",
    ]
    if _CODE.match(reply):
        fields.append(f"Diagnostic-Code: smtp; {_ascii(reply)[:900]}")
    fields.append(f"Last-Attempt-Date: {email.utils.formatdate(at)}")
    return fields


def build_dsn(
    hostname: str,
    message: Message,
    rcpts: Sequence[str],
    reason: str,
    raw: bytes,
    replies: Mapping[str, str] | None = None,
) -> bytes:
    """multipart/report: a human text part, message/delivery-status, the original headers.

    replies: each recipient's own reply, when they differ (a split shared copy);
    a recipient not in it is reported with reason.
    """
    own = replies or {}
    now = time.time()
    boundary = f"=_dsn_{secrets.token_hex(12)}"
    headers = raw[: min(head_end(raw), MAX_ORIGINAL_HEADERS)].rstrip(b"\r\n")
    human = [
        "This is the mail relay at " + hostname + ".",
        "",
        "Your message could not be delivered to the following recipients:",
        "",
        *(f"  <{_ascii(r)}>: {_ascii(own.get(r, reason))[:900]}" for r in rcpts),
        "",
        "The headers of your message are attached.",
    ]
    status = [
        f"Reporting-MTA: dns; {hostname}",
        f"Arrival-Date: {email.utils.formatdate(message.received_at)}",
        "",
    ]
    for rcpt in rcpts:
        status += [*recipient_fields(rcpt, own.get(rcpt, reason), now), ""]
    head = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{message.mail_from}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {email.utils.formatdate(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{hostname}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Description: Notification",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "Content-Description: Delivery report",
        "",
        *status,
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Description: Undelivered message headers",
        "",
    ]
    tail = f"\r\n\r\n--{boundary}--\r\n".encode()
    return "\r\n".join(head).encode("utf-8") + b"\r\n" + headers + tail


class BounceSender:
    """Sends the pending DSNs of the store, retrying a temporary failure for a while."""

    def __init__(
        self,
        config: Config,
        store: Store,
        upstream: Upstream,
        metrics: DeliveryMetrics | None = None,
        owner: str = "bounces",
    ) -> None:
        self.owner = owner  # the lease holder's name (the delivery worker's)
        self.config = config
        self.store = store
        self.upstream = upstream
        self.metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bounce-sender")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """A DSN cut short stays pending and is sent after the restart."""
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                for _ in range(BATCH):
                    now = time.time()
                    taken = await self.store.claim_bounces(self.owner, now, BOUNCE_LEASE_SECONDS, 1)
                    if not taken:
                        break
                    await self.send_one(taken[0])
            except Exception:  # the store may be briefly down; the to-do list stays
                log.exception("could not send bounces")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()

    async def send_one(self, pending: PendingBounce) -> None:
        message = await self.store.get_message(pending.message_id)
        copy = await self.store.get_copy(pending.copy_id)
        if message is None or copy is None or not message.mail_from:
            await self.store.settle_bounce(pending.copy_id, "failed", "nothing to bounce to")
            return
        raw = await self.store.load_raw(message.id)
        hostname, rcpts = self.config.smtp.hostname, _rcpts(copy)
        dsn = build_dsn(hostname, message, rcpts, pending.reason, raw, copy.replies)
        outcome = await self.upstream.send("", (message.mail_from,), dsn)
        if outcome.status == "delivered":
            await self.store.settle_bounce(pending.copy_id, "sent", outcome.reply)
            log.info("copy %s: bounce sent to <%s>", copy.id, message.mail_from)
            if self.metrics is not None:
                self.metrics.bounce_sent()
        elif outcome.status == "temporary" and time.time() - pending.created_at < GIVE_UP_SECONDS:
            retry = time.time() + RETRY_SECONDS
            await self.store.settle_bounce(pending.copy_id, "pending", outcome.reply, retry)
        else:
            log.warning("copy %s: bounce dropped: %s", copy.id, outcome.reply)
            await self.store.settle_bounce(pending.copy_id, "failed", outcome.reply)


def _rcpts(copy: Copy) -> tuple[str, ...]:
    return (copy.recipient,) if copy.recipient is not None else copy.rcpt_tos
