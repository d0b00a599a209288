"""The server side of TLS, the same for the SMTP and the tracking listeners."""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A context serving `cert` (and `key`, when apart), or None without a certificate;
    OSError or ssl.SSLError when the files are unusable. Reload with load_cert_chain on the
    same context: new handshakes then present the new certificate."""
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key or None)
    return context
