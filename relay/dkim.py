"""DKIM re-signing of rewritten copies (dkimpy).

A rewritten copy invalidates any body hash signed before it; with a [dkim]
key we sign the copy ourselves and drop earlier signatures of our own domain,
so a copy is never sent with a signature we broke.
"""

from __future__ import annotations

import re
from pathlib import Path

import dkim

from relay.core.config import DkimConfig
from relay.rewrite.headers import field_value, head_end, header_values, iter_fields, remove_headers

DEFAULT_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)


# What SMTP does to every line ending on the way out (aiosmtplib too): we sign that form.
_LINE_ENDINGS = re.compile(rb"\r\n|\n|\r(?!\n)")
_PROBE = b"From: probe@example.com\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimKeyError(ValueError):
    """The private key cannot be read or cannot sign; names the file."""


class DkimSigner:
    """Signs with one key, read and tried once at start so a broken key fails at start-up."""

    def __init__(self, config: DkimConfig) -> None:
        self.config = config
        path = Path(config.private_key)
        try:
            self.key = path.read_bytes()
        except OSError as exc:
            raise DkimKeyError(f"cannot read {path}: {exc.strerror or exc}") from None
        self.headers = tuple(h.lower() for h in (config.headers or DEFAULT_HEADERS))
        try:
            self.sign(_PROBE, rewritten=True)
        except Exception as exc:  # dkimpy raises several kinds for a bad key
            raise DkimKeyError(f"{path} is not a usable DKIM private key: {exc}") from None

    def sign(self, raw: bytes, *, rewritten: bool) -> bytes:
        """raw with our DKIM-Signature on top.

        Earlier signatures of our domain are replaced; when the copy was
        rewritten every earlier signature is broken, so all are dropped.
        """
        raw = _LINE_ENDINGS.sub(b"\r\n", raw)  # the wire form: signed as it will be read
        if rewritten:
            raw = remove_headers(raw, ["dkim-signature"])
        else:
            raw = self._without_own_signature(raw)
        include = [h.encode() for h in self.headers if h == "from" or header_values(raw, h)]
        signature: bytes = dkim.sign(
            raw,
            self.config.selector.encode(),
            self.config.domain.encode(),
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            linesep=b"\r\n",
        )
        return signature + raw

    def _without_own_signature(self, raw: bytes) -> bytes:
        """Drop our domain's earlier signatures; others' still verify on an unchanged copy."""
        own = re.compile(
            r"(?:^|;)\s*d\s*=\s*" + re.escape(self.config.domain) + r"\s*(?:;|$)", re.I
        )
        head = raw[: head_end(raw)]
        pieces, pos = [], 0
        for item in iter_fields(head):
            if item.name == b"dkim-signature" and own.search(field_value(head, item)):
                pieces.append(raw[pos : item.start])
                pos = item.end
        pieces.append(raw[pos:])
        return b"".join(pieces)
