"""Who may relay, and what to track for a sender and a message.

Mechanism lives elsewhere (smtp, rewrite); this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from relay.core.config import Config, SmtpConfig, SmtpUser
from relay.core.models import TrackingDecision


def may_relay(config: SmtpConfig, peer_ip: str, auth_user: str | None) -> bool:
    """True for an authenticated user or a peer inside allowed_networks."""
    raise NotImplementedError


def sender_allowed(user: SmtpUser, address: str) -> bool:
    """allowed_senders binding: empty list = any; patterns like "*@sales.example.com"."""
    raise NotImplementedError


def decide_tracking(
    config: Config,
    *,
    sender: str,
    auth_user: str | None,
    headers: Mapping[str, Sequence[str]],
) -> TrackingDecision:
    """Config switches, then [[tracking.policy]] (first match), then message headers
    (X-Track and the hosted services' equivalents, which can only turn tracking off
    further), then DKIM (a signed message without a [dkim] key is left untracked).

    headers maps lower-case header names to their values.
    """
    raise NotImplementedError


def control_header_names(config: SmtpConfig) -> tuple[str, ...]:
    """The per-message control headers to strip before relaying."""
    raise NotImplementedError
