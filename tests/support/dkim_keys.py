"""DKIM keys made in the test, and a DNS lookup that publishes their public halves.

dkim.verify takes the lookup as its `dnsfunc`, so no test asks a real resolver.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def make_key() -> tuple[bytes, bytes]:
    """(PEM private key, the TXT record publishing its public half)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_answering(records: dict[bytes, bytes]) -> Callable[..., bytes | None]:
    """A dnsfunc answering the TXT records given, by name, and nothing else."""

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name.rstrip(b"."))

    return lookup
