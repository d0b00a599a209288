"""What the SMTP front reads from and adds to an accepted message.

Headers are read and edited surgically (relay.rewrite.headers): the body
and every other header keep their bytes.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from dataclasses import dataclass
from email.header import decode_header, make_header

from relay.core.config import Config
from relay.core.models import TrackingDecision
from relay.policy import control_header_names, decide_tracking
from relay.rewrite.headers import (
    field_value,
    head_end,
    header_values,
    iter_fields,
    prepend_headers,
    remove_headers,
)

MAX_SUBJECT = 998
MAX_REFERENCES = 50
MAX_HELO = 255
MAX_ADDRESS = 320
_MSG_ID = re.compile(r"<[^<>\s]{1,998}>")
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-:_\[\]]")
_ADDRESS_UNSAFE = re.compile(r"[\x00-\x20\x7f<>()\\,;]")
_DOMAIN_LABEL = re.compile(r"[^\x00-\x20\x7f<>()\[\]\\,;:@\"]+")


@dataclass(frozen=True)
class ParsedMessage:
    """The bytes to spool and the facts read from the message's headers."""

    raw: bytes
    sender: str
    subject: str
    message_id: str
    decision: TrackingDecision
    in_reply_to: tuple[str, ...]


def valid_address(address: str) -> bool:
    """Syntax check of an envelope address: local@domain, domain a host or [literal]."""
    if not address or len(address) > MAX_ADDRESS:
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return False
    if not local.startswith('"') and _ADDRESS_UNSAFE.search(local):
        return False
    if domain.startswith("[") and domain.endswith("]"):
        return _ADDRESS_UNSAFE.search(domain[1:-1]) is None
    labels = domain.split(".")
    return all(_DOMAIN_LABEL.fullmatch(label) for label in labels)


def from_addresses(raw: bytes) -> list[str]:
    """The addresses of every From: header (lower-cased domain kept as sent)."""
    try:
        pairs = email.utils.getaddresses(header_values(raw, "from"))
    except Exception:
        return []
    return [addr for _name, addr in pairs if "@" in addr]


def decode_subject(raw: bytes) -> str:
    """The Subject with RFC 2047 words decoded; never raises, bounded length."""
    values = header_values(raw, "subject")
    if not values:
        return ""
    try:
        text = str(make_header(decode_header(values[0])))
    except Exception:
        text = values[0]
    return " ".join(text.split())[:MAX_SUBJECT]


def referenced_ids(raw: bytes) -> tuple[str, ...]:
    """Message-IDs named by In-Reply-To and References, first seen first, bounded."""
    found: dict[str, None] = {}
    for name in ("in-reply-to", "references"):
        for value in header_values(raw, name):
            for match in _MSG_ID.findall(value):
                found.setdefault(match, None)
    return tuple(found)[:MAX_REFERENCES]


def header_map(raw: bytes) -> dict[str, list[str]]:
    """Top-level headers by lower-case name, for the tracking decision."""
    head = raw[: head_end(raw)]
    fields: dict[str, list[str]] = {}
    for item in iter_fields(head):
        if item.name:
            name = item.name.decode("ascii", "replace")
            fields.setdefault(name, []).append(field_value(head, item))
    return fields


def received_header(
    config: Config, *, helo: str, ip: str, protocol: str, rcpt_tos: tuple[str, ...]
) -> str:
    """A Received: trace field in the RFC 5321 section 4.4 form (folded)."""
    helo_text = _HELO_UNSAFE.sub("?", helo)[:MAX_HELO] or "unknown"
    literal = f"IPv6:{ip}" if ":" in ip else ip
    local_id = secrets.token_hex(8)
    when = email.utils.formatdate(localtime=True)
    line = f"Received: from {helo_text} ([{literal}])\n\tby {config.smtp.hostname}"
    line += f" with {protocol} id {local_id}"
    if len(rcpt_tos) == 1 and valid_address(rcpt_tos[0]):
        line += f"\n\tfor <{rcpt_tos[0]}>"
    return f"{line}; {when}"


def prepare_message(
    config: Config,
    raw: bytes,
    *,
    helo: str,
    ip: str,
    auth_user: str | None,
    protocol: str,
    rcpt_tos: tuple[str, ...],
) -> ParsedMessage:
    """Decide tracking, drop control headers, add Received and a missing Message-ID."""
    senders = from_addresses(raw)
    sender = senders[0] if senders else ""
    decision = decide_tracking(config, sender=sender, auth_user=auth_user, headers=header_map(raw))
    message_id = next((v for v in header_values(raw, "message-id") if v), "")
    added = [received_header(config, helo=helo, ip=ip, protocol=protocol, rcpt_tos=rcpt_tos)]
    if not message_id:
        message_id = f"<{secrets.token_hex(16)}@{config.smtp.hostname}>"
        added.append(f"Message-ID: {message_id}")
    stripped = remove_headers(raw, control_header_names(config.smtp))
    return ParsedMessage(
        raw=prepend_headers(stripped, added),
        sender=sender,
        subject=decode_subject(raw),
        message_id=message_id,
        decision=decision,
        in_reply_to=referenced_ids(raw),
    )
