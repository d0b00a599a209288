"""Every reply the SMTP front sends that is not aiosmtpd's own, each written once.

A reply is a code, an enhanced status code (RFC 3463, advertised with
ENHANCEDSTATUSCODES, RFC 2034) and a text. A Refusal also names its reason
in relay_messages_refused, and is sent only through refuse(), which counts
it: a refusal the metrics miss is one an operator never sees. Texts with
``{fields}`` are filled in by Reply.format (or refuse's keywords).

Like aiosmtpd's module constants, each one is a name with a docstring saying
why it exists where the code alone does not.
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.core.metrics import Metrics


@dataclass(frozen=True)
class Reply:
    """One SMTP reply; str() is the line to push (format() when the text has fields)."""

    code: int
    status: str  # enhanced status code; "" for 3xx, which has none (RFC 2034)
    text: str

    def __str__(self) -> str:
        return self.format()

    def format(self, **fields: object) -> str:
        text = self.text.format(**fields) if fields else self.text
        return " ".join(part for part in (str(self.code), self.status, text) if part)


@dataclass(frozen=True)
class Refusal(Reply):
    """A reply that refuses a session, a transaction or a message; reason is its label
    in relay_messages_refused (relay.core.metrics.REFUSAL_REASONS)."""

    reason: str


def refuse(metrics: Metrics | None, refusal: Refusal, **fields: object) -> str:
    """The one way a refusal is sent: counted under its reason, then the line to push."""
    if metrics is not None:
        metrics.refused(refusal.reason)
    return refusal.format(**fields)


def ehlo_extensions(max_message_size: int) -> list[str]:
    """The EHLO lines aiosmtpd does not write: SIZE (we enforce it), PIPELINING
    (RFC 2920: aiosmtpd reads pipelined commands fine), ENHANCEDSTATUSCODES."""
    return [f"250-SIZE {max_message_size}", "250-PIPELINING", "250-ENHANCEDSTATUSCODES"]


# --- connection -----------------------------------------------------------------

SESSION_LIMIT = Refusal(421, "4.7.0", "{host} Error: {why}", "session_limit")
"""Over smtp.max_sessions or max_sessions_per_address: said, then the connection closes."""

HANG_UP = Reply(421, "4.4.2", "{host} Error: {why}")
"""A command or session timeout; aiosmtpd would close without a word, Postfix says why."""

INTERNAL_ERROR = Reply(451, "4.3.0", "Internal error; please try again later")
"""A bug: aiosmtpd answers 500, which makes senders bounce mail that a retry would pass."""

# --- AUTH -------------------------------------------------------------------------

AUTH_UNSPLITTABLE = Reply(501, "5.5.2", "Can't split auth value")
AUTH_NOT_BASE64 = Reply(501, "5.5.2", "Can't decode base64")
AUTH_TOO_MANY_IN_SESSION = Reply(
    421, "4.7.0", "Too many authentication failures; closing connection"
)
"""smtp auth failures_per_connection reached: a guesser gets a new connection each time."""

AUTH_BUDGET_USED = Reply(454, "4.7.0", "Too many failed authentications; try again later")
"""The address's or user's failure budget is used up (auth.py): temporary, not 535, so the
owner of the account is not told the password is wrong."""

# --- MAIL -------------------------------------------------------------------------

SENDER_OK = Reply(250, "2.1.0", "Ok")

AUTH_REQUIRED = Refusal(530, "5.7.0", "Authentication required", "auth_required")
"""Neither authenticated nor in allowed_networks (SPEC 4)."""

TOO_BIG = Refusal(552, "5.3.4", "Message size exceeds fixed maximum message size", "too_big")
"""Over max_message_size: at MAIL when SIZE= says so, else after the data."""

QUEUE_FULL = Refusal(452, "4.3.1", "Insufficient system storage", "queue_full")
"""max_queued_copies reached (backpressure.py): temporary, so clients keep the mail."""

BAD_SENDER = Refusal(553, "5.1.3", "Bad sender address syntax", "bad_address")

SENDER_NOT_ALLOWED = Refusal(
    550, "5.7.1", "Sender address not allowed for this user", "sender_not_allowed"
)
"""The user's allowed_senders do not include the envelope sender."""

# --- RCPT -------------------------------------------------------------------------

RECIPIENT_OK = Reply(250, "2.1.5", "Ok")

RELAY_DENIED = Refusal(554, "5.7.1", "Relay access denied", "relay_denied")
"""At RCPT too (and a pipelined RCPT after a refused MAIL), as Postfix does: not 503."""

BAD_RECIPIENT = Refusal(553, "5.1.3", "Bad recipient address syntax", "bad_address")

TOO_MANY_RECIPIENTS = Refusal(452, "4.5.3", "Too many recipients", "too_many_recipients")
"""Over max_recipients: temporary, so the client sends the rest in another transaction."""

# --- DATA -------------------------------------------------------------------------

NEED_RCPT = Reply(503, "5.5.1", "Error: need RCPT command")
DATA_SYNTAX = Reply(501, "5.5.4", "Syntax: DATA")
START_DATA = Reply(354, "", "End data with <CR><LF>.<CR><LF>")

BAD_HEADER_BLOCK = Refusal(
    550, "5.6.0", "Bare CR, bare LF or NUL in the header block", "malformed_header"
)
"""Readers would disagree on where its fields end (message.header_block_clean)."""

FROM_NOT_ALLOWED = Refusal(
    550, "5.7.1", "From: address not allowed for this user", "sender_not_allowed"
)
"""The user's allowed_senders do not include every From address, or it is ambiguous."""

STORAGE_FAILURE = Refusal(
    451, "4.3.0", "Temporary storage failure; please try again later", "storage_error"
)
"""The spool failed: never 250 for a message that is not stored (SPEC 4)."""

QUEUED = Reply(250, "2.0.0", "Ok: queued as {message_id}")
"""Sent once the spool committed; the id is the one `relay queue` and the logs show."""

ACCEPTED = Reply(250, "2.0.0", "Ok")
"""A DATA hook that returned nothing (aiosmtpd's would be a bare "250 OK")."""
