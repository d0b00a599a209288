"""Which kind of client opened a copy: a user-agent family and a network (SPEC section 7).

Two human opens of one recipient's copy from clearly different clients (a
different family *and* a different network) flag the copy "possibly
forwarded or shared". The family is coarse on purpose: agents change with
every release, families do not, and one person's Outlook on a new build is
still one client. The network is the anonymised address (IPv4 /24, IPv6
/48), so a reader whose address moves inside a home or office line is one
client too.
"""

from __future__ import annotations

from typing import NamedTuple

from relay.core.limits import MAX_USER_AGENT
from tracking_http.classify import BROWSERS, MAIL_CLIENTS

OTHER = "other"


class ClientKey(NamedTuple):
    """What tells clients apart: user-agent family and anonymised network."""

    family: str
    network: str  # "" when the address could not be parsed: then nothing is compared


def ua_family(user_agent: str) -> str:
    """Outlook, AppleMail, Gmail, Thunderbird, ... (the classifier's mail clients), then
    Edge, Opera, Firefox, Chrome, Safari; ``other`` for anything else."""
    agent = user_agent[:MAX_USER_AGENT]
    for family, pattern in (*MAIL_CLIENTS, *BROWSERS):
        if pattern.search(agent):
            return family
    return OTHER
