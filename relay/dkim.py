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
from relay.rewrite.headers import header_values, remove_headers

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


class DkimSigner:
    """Signs with one key, read once at start so a broken key fails at start-up."""

    def __init__(self, config: DkimConfig) -> None:
        self.config = config
        self.key = Path(config.private_key).read_bytes()
        self.headers = tuple(h.lower() for h in (config.headers or DEFAULT_HEADERS))

    def sign(self, raw: bytes, *, rewritten: bool) -> bytes:
        """raw with our DKIM-Signature on top.

        Earlier signatures of our domain are replaced; when the copy was
        rewritten every earlier signature is broken, so all are dropped.
        """
        if rewritten:
            raw = remove_headers(raw, ["dkim-signature"])
        else:
            raw = self._without_own_signature(raw)
        linesep = b"\r\n" if b"\r\n" in raw[:65536] else b"\n"
        include = [h.encode() for h in self.headers if h == "from" or header_values(raw, h)]
        signature: bytes = dkim.sign(
            raw,
            self.config.selector.encode(),
            self.config.domain.encode(),
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
            linesep=linesep,
        )
        return signature + raw

    def _without_own_signature(self, raw: bytes) -> bytes:
        own = re.compile(
            r"(?:^|;)\s*d\s*=\s*" + re.escape(self.config.domain) + r"\s*(?:;|$)", re.I
        )
        signatures = header_values(raw, "dkim-signature")
        if signatures and all(own.search(value) for value in signatures):
            return remove_headers(raw, ["dkim-signature"])
        return raw  # others' signatures still verify on an unchanged copy: keep them
