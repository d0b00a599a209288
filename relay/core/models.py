"""Plain records passed between the SMTP front, delivery, the store and HTTP.

They carry no behaviour and no SQL, so every layer can share them; beside them,
the few definitions every layer must agree on (which event classes are machines').
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

CopyState = Literal["queued", "deferred", "delivered", "bounced"]
EventKind = Literal["open", "click", "reply"]
EventClass = Literal["human", "bot", "proxy", "prefetch", "self"]
# Bot, proxy and prefetch fetches are machines'; an inferred event is a person's
# (relay/core/store/sql/classes.py says the same in SQL).
MACHINE_CLASSES: tuple[EventClass, ...] = ("bot", "proxy", "prefetch")


def is_machine(klass: str | None, inferred: bool) -> bool:
    """Whether an event is a machine's fetch (``is_machine`` in the API and webhooks)."""
    return klass in MACHINE_CLASSES and not inferred


@dataclass(frozen=True)
class TrackingDecision:
    """What to do with one message, decided by relay.policy and stored with it.

    Everything that shapes a copy is decided once, at spool time, so a config
    change between spool and delivery never mixes two policies in one message
    (a copy tracked by one and signed by the other). A field left None comes
    from a message spooled before it was stored: delivery takes it from the
    config then, as it always did.
    """

    opens: bool
    clicks: bool
    log_copy: bool = False
    per_recipient: bool = True
    base_url: str = ""  # tracking domain for this message's links and pixel
    reasons: tuple[str, ...] = ()  # why (header, policy rule, DKIM, ...), shown to operators
    pixel_position: str | None = None  # "auto" | "top" | "bottom"
    honeypot: bool | None = None
    skip_bare_url_links: bool | None = None
    exclude_links: tuple[str, ...] | None = None  # the regexes' sources
    max_links_per_part: int | None = None
    avoid_image_only: bool | None = None
    # The message carries a DKIM-Signature and is tracked: a rewritten copy goes out
    # only with our signature, else untouched (SPEC 5). None: look at its headers.
    resign: bool | None = None


# A message's tags (relay/smtp/tags.py reads them, the store keeps them): at most
# MAX_TAGS, each at most MAX_TAG_CHARS long.
MAX_TAGS = 20
MAX_TAG_CHARS = 100


@dataclass(frozen=True)
class NewMessage:
    """A message accepted over SMTP, before it is spooled."""

    mail_from: str  # "" for the null sender
    rcpt_tos: tuple[str, ...]
    raw: bytes  # exactly the bytes to relay (Received and Message-ID already added)
    received_at: float  # unix time
    client_addr: str
    auth_user: str | None
    sender: str  # From: header address, for display
    subject: str  # decoded Subject, for display
    message_id_header: str  # the Message-ID header value
    decision: TrackingDecision
    in_reply_to: tuple[str, ...] = ()  # Message-IDs from In-Reply-To/References
    tags: tuple[str, ...] = ()  # from X-Tag and the vendors' tag headers (relay/smtp/tags.py)


@dataclass(frozen=True)
class Message:
    """A spooled message as the store returns it (raw bytes not included)."""

    id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: float
    client_addr: str
    auth_user: str | None
    sender: str
    subject: str
    message_id_header: str
    decision: TrackingDecision
    tags: tuple[str, ...] = ()  # filled by the lists and the report; get_message leaves ()


@dataclass(frozen=True)
class Copy:
    """One delivery: a recipient's copy, or the shared copy (recipient None)."""

    id: int
    message_id: str
    recipient: str | None  # None: shared copy, events attributed to "someone"
    rcpt_tos: tuple[str, ...]  # envelope recipients of this delivery
    state: CopyState
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_reply: str = ""
    queue_id: str = ""  # the upstream's queue id, from its 250 reply
    delivered_at: float | None = None
    rewrite_note: str = ""  # why the copy (or part of it) was relayed untracked
    # A shared copy whose recipients the upstream answered differently (RCPT
    # refusals): each recipient's own last reply; empty when last_reply is everyone's.
    replies: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class RecipientRefusal:
    """One envelope recipient the upstream refused at RCPT, with its own answer."""

    address: str
    status: Literal["temporary", "permanent"]
    reply: str


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one delivery attempt, as the upstream module reports it.

    ``refused`` lists the recipients the upstream answered on their own at RCPT;
    status, reply and queue_id are the answer for every other recipient (when
    every recipient was refused, status sums theirs up: temporary if any was).
    """

    status: Literal["delivered", "temporary", "permanent"]
    reply: str  # the upstream's reply text, or a description of the failure
    queue_id: str = ""
    refused: tuple[RecipientRefusal, ...] = ()


@dataclass(frozen=True)
class CopyPart:
    """Some recipients of a shared copy and the outcome of the attempt for them.

    A shared copy whose recipients got different outcomes is split: each part
    gets its own copy (the first keeps the original), so each is retried,
    bounced or done on its own.
    """

    rcpt_tos: tuple[str, ...]
    outcome: DeliveryOutcome
    next_attempt_at: float | None  # temporary: when to try again; None: give up (bounce)
    replies: dict[str, str] = field(default_factory=dict)  # address -> own reply, if they differ


@dataclass(frozen=True)
class Event:
    """One open or click, classified."""

    kind: EventKind
    copy_id: int
    message_id: str
    recipient: str | None  # None: "someone"
    at: float
    ip: str
    user_agent: str
    klass: EventClass = "human"
    reasons: tuple[str, ...] = ()
    url: str = ""  # clicks
    link_index: int | None = None  # clicks
    inferred: bool = False
    id: int | None = None  # assigned by the store
    extra: dict[str, str] = field(default_factory=dict)


def event_from(fields: Mapping[str, Any], **changes: Any) -> Event:
    """An Event from every one of its fields (and changes), without running __init__.

    The frozen dataclass's __init__ and dataclasses.replace cost a setattr per
    field (replace several times more): too much on the pixel path, where each
    hit builds a few. ``fields`` must name every field, as ``vars(event)`` does.
    """
    event: Event = object.__new__(Event)
    event.__dict__.update(fields, **changes)
    return event


@dataclass(frozen=True)
class CopySpec:
    """A copy to create at spool time: one per recipient, or one shared (recipient None)."""

    recipient: str | None
    rcpt_tos: tuple[str, ...]


@dataclass(frozen=True)
class MessageSummary:
    """A row of the messages list."""

    message: Message
    recipients: int
    states: dict[str, int]  # copy state -> number of copies
    opens: dict[str, int]  # class -> count, plus "unique_human"
    clicks: dict[str, int]  # class -> count, plus "unique_human"
    # unique human opens (clicks) / copies delivered; 0.0 when none was delivered
    open_rate: float = 0.0
    click_rate: float = 0.0


@dataclass(frozen=True)
class LinkReport:
    url: str
    clicks: dict[str, int]  # class -> count, plus unique_human (copies with a human click)


@dataclass(frozen=True)
class RecipientReport:
    """One recipient's copy with its counts (address None: "someone")."""

    address: str | None
    copy: Copy | None
    opens: dict[str, int]  # human (inferred included), inferred, proxy, bot, prefetch, self
    clicks: dict[str, int]  # human, bot, prefetch, self
    first_open: float | None
    last_open: float | None
    links: tuple[LinkReport, ...]
    replies: int = 0  # later messages through the relay answering this one (SPEC 7)
    possibly_forwarded: bool = False  # human opens from clearly different clients (SPEC 7)


@dataclass(frozen=True)
class MessageReport:
    message: Message
    recipients: tuple[RecipientReport, ...]
    someone: RecipientReport
    links: tuple[LinkReport, ...] = ()  # every copy's clicks per link; unique_human: copies


@dataclass(frozen=True)
class MessageFilter:
    """Narrows the messages list; every field given must hold (AND).

    q: words of the subject (each must appear, case-insensitively) and addresses
    (a word with an @: the sender or a recipient of a copy of its own)."""

    sender: str | None = None
    since: float | None = None  # unix time
    until: float | None = None
    q: str | None = None
    recipient: str | None = None  # a recipient of a copy of its own (copies_by_recipient)
    tag: str | None = None  # compared case-insensitively
    state: str | None = None  # some copy of the message is in this delivery state


@dataclass(frozen=True)
class TagSummary:
    """A tag as GET /api/tags lists it."""

    tag: str  # as the newest message spelled it
    messages: int
    last_used: float  # unix time the newest message with it was received


@dataclass(frozen=True)
class TagReport:
    """A tag's campaign report over the messages received in [since, until) (SPEC 8).

    Unique = copies (a recipient's copy, or a shared copy once); rates are over
    delivered copies, click_to_open over copies with a unique human open; 0.0 when
    the denominator is 0."""

    tag: str
    messages: int
    recipients: int
    delivered: int
    bounced: int
    opens: dict[str, int]  # unique_human, unique_maybe (proxy only: "opened, maybe")
    clicks: dict[str, int]  # unique_human
    open_rate: float
    proxy_rate: float
    click_rate: float
    click_to_open: float
    links: tuple[tuple[str, int], ...]  # (url, copies with a human click), most first


@dataclass(frozen=True)
class ClientOpen:
    """Opens of one copy by one user agent in one class (human, not inferred, or proxy):
    what the mail-clients table is made of (tracking_http/readers.py names the client)."""

    copy_id: int
    klass: str
    user_agent: str
    reasons: tuple[str, ...]
    opens: int


@dataclass(frozen=True)
class ContactReport:
    """One recipient address across all messages: the CRM contact view (SPEC 8)."""

    address: str
    deliveries: tuple[tuple[Message, Copy], ...]  # the copies sent there, newest first
    last_open: float | None  # human opens, inferred included
    last_click: float | None  # human clicks
    last_reply: float | None
    events: tuple[Event, ...]  # newest first, bounded


@dataclass(frozen=True)
class EventBucket:
    """Events of one kind and class that fell in [start, start + width) (for charts)."""

    start: float
    kind: str
    klass: str  # "human" includes inferred events
    count: int


@dataclass(frozen=True)
class PendingBounce:
    """A bounced copy whose delivery status notification is still to be sent."""

    copy_id: int
    message_id: str
    reason: str  # the last upstream reply, or why the queue gave up
    attempts: int
    created_at: float


@dataclass(frozen=True)
class WebhookNotice:
    """One event as a webhook tells it (SPEC 8), snapshotted when queued for the endpoints."""

    kind: str  # open, click, reply, delivered, deferred, bounce
    at: float
    message_id: str
    recipient: str | None  # None: "someone" (a shared copy)
    event_id: int | None = None  # opens, clicks, replies
    url: str = ""
    klass: str | None = None  # None for delivery events
    inferred: bool = False
    first: bool = False
    reasons: tuple[str, ...] = ()
    reply: str = ""  # delivery events: the upstream's last reply
    attempts: int = 0  # delivery events: attempts so far


@dataclass(frozen=True)
class WebhookTarget:
    """A configured endpoint, as far as the store needs it: which events it wants."""

    url: str
    events: tuple[str, ...]


@dataclass(frozen=True)
class WebhookDelivery:
    """One pending POST of one notice to one endpoint (a row of the durable outbox)."""

    id: int
    webhook_id: str  # the webhook-id header: the same on every retry
    endpoint: str
    notice: WebhookNotice
    attempts: int
    created_at: float


@dataclass(frozen=True)
class WebhookRow:
    """An outbox row as the dashboard's webhooks page shows it."""

    delivery: WebhookDelivery
    state: str  # pending (to be tried at next_attempt_at) or failed (given up)
    next_attempt_at: float
    last_error: str


@dataclass(frozen=True)
class QueueEntry:
    """A copy as the queue page shows it, with what an operator knows its message by."""

    copy: Copy
    sender: str
    subject: str
    received_at: float
    body_kept: bool = True  # a bounced copy can be sent again only while its body is kept
