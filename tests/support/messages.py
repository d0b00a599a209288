"""Messages as the SMTP front hands them to the store, and spooling them.

One factory for every test that needs a message in the store: the defaults are a
plain tracked message from Alice to Bob and Carol, received now; a test that
depends on a field (the sender, the body, the decision, the tags) passes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from relay.core.models import Copy, CopySpec, Event, EventKind, NewMessage, TrackingDecision
from relay.core.store import Store

ALICE = "alice@example.com"
BOB, CAROL = "bob@example.net", "carol@example.org"
RECIPIENTS = (BOB, CAROL)
TRACK_ALL = TrackingDecision(opens=True, clicks=True)
SHARED = TrackingDecision(opens=True, clicks=True, per_recipient=False)  # one copy for all
PLAIN = b"Subject: s\r\n\r\nhi\r\n"
THUNDERBIRD = "Mozilla/5.0 Thunderbird/128.0"


def new_message(
    rcpts: Sequence[str] = RECIPIENTS,
    *,
    mail_from: str = ALICE,
    sender: str | None = None,
    raw: bytes = PLAIN,
    received_at: float | None = None,
    client_addr: str = "127.0.0.1",
    auth_user: str | None = None,
    subject: str = "s",
    message_id_header: str = "<m@example.com>",
    decision: TrackingDecision = TRACK_ALL,
    in_reply_to: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
) -> NewMessage:
    """A NewMessage; `sender` (the From: address) defaults to the envelope sender."""
    return NewMessage(
        mail_from=mail_from,
        rcpt_tos=tuple(rcpts),
        raw=raw,
        received_at=time.time() if received_at is None else received_at,
        client_addr=client_addr,
        auth_user=auth_user,
        sender=mail_from if sender is None else sender,
        subject=subject,
        message_id_header=message_id_header,
        decision=decision,
        in_reply_to=in_reply_to,
        tags=tags,
    )


def html_mail(
    html: str, subject: str = "s", to: str = BOB, text: str = "Plain text part.", **headers: str
) -> EmailMessage:
    """A mail from Alice as a mail program writes it: a plain text part and the HTML as
    alternatives; `headers` added (underscores in their names become dashes)."""
    message = EmailMessage()
    message["From"] = ALICE
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def copy_specs(msg: NewMessage) -> list[CopySpec]:
    """The copies the SMTP front asks for: one per recipient, or one shared by all when the
    decision is not per recipient."""
    if not msg.decision.per_recipient:
        return [CopySpec(None, msg.rcpt_tos)]
    return [CopySpec(r, (r,)) for r in msg.rcpt_tos]


@dataclass(frozen=True)
class Spooled(Mapping[str, Copy]):
    """A spooled message: its id, and its copies by recipient ("" for a shared copy)."""

    message_id: str
    copies: dict[str, Copy]

    def __getitem__(self, recipient: str) -> Copy:
        return self.copies[recipient]

    def __iter__(self) -> Iterator[str]:
        return iter(self.copies)

    def __len__(self) -> int:
        return len(self.copies)

    @property
    def ids(self) -> dict[str, int]:
        """The copy ids by recipient."""
        return {recipient: copy.id for recipient, copy in self.copies.items()}

    def event(self, recipient: str, kind: EventKind = "open", **fields: Any) -> Event:
        """An event on the recipient's copy, now, from a Thunderbird reader at
        198.51.100.7; `fields` change any of that."""
        copy = self.copies[recipient]
        values: dict[str, Any] = {
            "kind": kind,
            "copy_id": copy.id,
            "message_id": self.message_id,
            "recipient": copy.recipient,
            "at": time.time(),
            "ip": "198.51.100.7",
            "user_agent": THUNDERBIRD,
        }
        return Event(**(values | fields))


async def spool_message(store: Store, msg: NewMessage) -> Spooled:
    """Spool `msg` with the copies of copy_specs(msg)."""
    message_id = await store.spool(msg, copy_specs(msg))
    copies = {c.recipient or "": c for c in await store.copies_of(message_id)}
    return Spooled(message_id, copies)


async def spool(store: Store, rcpts: Sequence[str] = RECIPIENTS, **fields: Any) -> Spooled:
    """Spool new_message(rcpts, **fields)."""
    return await spool_message(store, new_message(rcpts, **fields))


async def spool_one(store: Store, rcpt: str = BOB) -> tuple[str, int]:
    """A message to one recipient: its id and its copy's."""
    spooled = await spool(store, (rcpt,))
    return spooled.message_id, spooled[rcpt].id
