"""What the relay reads from aiosmtpd's Session: the client's address and its user."""

from __future__ import annotations

from typing import Any

NULL_SENDER = "<>"  # aiosmtpd's spelling of MAIL FROM:<>


def peer_ip(session: Any) -> str:
    """The client's IP address from aiosmtpd's session.peer ("" when unknown)."""
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return ""


def auth_user(session: Any) -> str | None:
    """The authenticated user name, or None."""
    if getattr(session, "authenticated", False) and isinstance(session.auth_data, str):
        return session.auth_data
    return None
