"""What the SMTP front reads from and adds to an accepted message.

Headers are read and edited surgically (relay.rewrite.headers): the body
and every other header keep their bytes.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from dataclasses import dataclass
from email.errors import InvalidHeaderDefect
from email.header import decode_header, make_header
from email.headerregistry import AddressHeader, HeaderRegistry

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
from relay.smtp.tags import message_tags, tag_header_names

MAX_SUBJECT = 998
MAX_REFERENCES = 50
MAX_HELO = 255
MAX_ADDRESS = 320
_MSG_ID = re.compile(r"<[^<>\s]{1,998}>")
_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-:_\[\]]")
_ADDRESS_UNSAFE = re.compile(r"[\x00-\x20\x7f<>()\\,;]")
_DOMAIN_LABEL = re.compile(r"[^\x00-\x20\x7f<>()\[\]\\,;:@\"]+")
# RFC 5321 4.1.2: no control character anywhere in a path, quoted local parts included
# (qtextSMTP and quoted-pairSMTP are %d32-126).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")  # RFC 5322 ftext, then the colon
MAX_FROM = 16 * 1024  # characters of a From value worth parsing for allowed_senders
_HEADERS = HeaderRegistry()


@dataclass(frozen=True)
class ParsedMessage:
    """The bytes to spool and the facts read from the message's headers."""

    raw: bytes
    sender: str
    subject: str
    message_id: str
    decision: TrackingDecision
    in_reply_to: tuple[str, ...]
    tags: tuple[str, ...] = ()


def valid_address(address: str) -> bool:
    """Syntax check of an envelope address: local@domain, domain a host or [literal]."""
    if not address or len(address) > MAX_ADDRESS or _CONTROL.search(address):
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


def header_block_clean(raw: bytes) -> bool:
    """False when the header block holds a bare CR, a bare LF or a NUL.

    The block runs to the first CRLF CRLF (the whole message without one). With
    every line ending CRLF, every reader agrees on it: the relay's own
    (relay.rewrite.headers, which splits on LF), the email package (CR, LF or
    CRLF) and the upstream copy, which aiosmtplib sends with each bare CR and
    bare LF turned into CRLF. So a field can hide from none of them.
    """
    end = 2 if raw.startswith(b"\r\n") else raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[:end]
    crlf = head.count(b"\r\n")
    return head.count(b"\r") == crlf and head.count(b"\n") == crlf and b"\0" not in head


def author_addresses(raw: bytes) -> tuple[str, ...] | None:
    """The addresses of the message's one From field, for an allowed_senders check.

    None (refuse) for no From field, several From fields, or a value that does
    not read as a list of addresses, or reads differently to email.utils (what
    the relay records as sender) and to the email package's RFC 5322 parser.
    None too when a line of the header block is neither a field ("Name:") nor
    a folded continuation ("From : x", junk, leading blanks): readers differ on
    those (Postfix and RFC 5322's obsolete syntax take "From : x" as a From,
    the email package ends the header block there), so the From is ambiguous.
    """
    head = raw[: head_end(raw)]
    if any(not _FIELD_NAME.match(head, item.start) for item in iter_fields(head)):
        return None
    values = header_values(raw, "from")
    if len(values) != 1 or len(values[0]) > MAX_FROM:
        return None
    try:
        loose = [addr for _name, addr in email.utils.getaddresses(values) if addr]
        parsed = _HEADERS("from", values[0])
        if not isinstance(parsed, AddressHeader):
            return None
        strict = [address.addr_spec for address in parsed.addresses]
    except Exception:
        return None
    if any(isinstance(defect, InvalidHeaderDefect) for defect in parsed.defects):
        return None
    if not strict or strict != loose or not all("@" in addr for addr in strict):
        return None
    return tuple(strict)


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


def read_submission(
    config: Config,
    raw: bytes,
    *,
    helo: str,
    ip: str,
    auth_user: str | None,
    protocol: str,
    rcpt_tos: tuple[str, ...],
) -> ParsedMessage:
    """What the front keeps of a submitted message: its tracking decision and the bytes to spool.

    Decides tracking, drops the control and tag headers, adds Received and a
    missing Message-ID.
    """
    senders = from_addresses(raw)
    sender = senders[0] if senders else ""
    headers = header_map(raw)
    decision = decide_tracking(config, sender=sender, auth_user=auth_user, headers=headers)
    message_id = next((v for v in header_values(raw, "message-id") if v), "")
    added = [received_header(config, helo=helo, ip=ip, protocol=protocol, rcpt_tos=rcpt_tos)]
    if not message_id:
        message_id = f"<{secrets.token_hex(16)}@{config.smtp.hostname}>"
        added.append(f"Message-ID: {message_id}")
    stripped = remove_headers(
        raw, (*control_header_names(config.smtp), *tag_header_names(config.smtp))
    )
    return ParsedMessage(
        raw=prepend_headers(stripped, added),
        sender=sender,
        subject=decode_subject(raw),
        message_id=message_id,
        decision=decision,
        in_reply_to=referenced_ids(raw),
        tags=message_tags(headers),
    )
