"""Which mail clients and platforms opened a message or a tag's messages (SPEC 8).

The store hands over the opens it kept (tracking_http/classify.py labelled them,
the user agent is stored whole): one row per copy, class and agent. This names
the client and the platform of each row and counts readers, that is copies: a
copy opened three times in Outlook is one Outlook reader, a copy opened on a
phone and on a desktop is one reader on each.

Human opens (not inferred: an inferred open has no agent of its own) are named
from their agent, with the classifier's own patterns (tracking_http.clients):
a mail program says which it is; a browser is a webmail reader. Proxy opens
are named from the proxy: Gmail's and Yahoo's image proxies are their webmail
(or app: nobody can tell), Apple's Mail Privacy Protection is Apple Mail on a
device it hides. They are counted apart ("opened, maybe"), as everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from relay.core.models import ClientOpen
from tracking_http.clients import OTHER, ua_family

MOBILE = re.compile(r"iPhone|iPad|iPod|Android|Mobile|Outlook-(?:iOS|Android)", re.IGNORECASE)
# ua_family's families -> (client name, platform when the agent does not say mobile)
MAIL_PROGRAMS = {
    "Outlook": ("Outlook", "desktop"),
    "AppleMail": ("Apple Mail", "desktop"),
    "Thunderbird": ("Thunderbird", "desktop"),
    "Gmail": ("Gmail", "mobile"),  # the Gmail app; Gmail on the web fetches by its proxy
    "YahooMail": ("Yahoo Mail", "mobile"),
    "AndroidMail": ("Android mail app", "mobile"),
    "OtherMail": ("Other mail app", "desktop"),
}
PROXIES = (  # the classifier's reason codes of a proxy open
    ("ua:google-image-proxy", "Gmail", "webmail"),
    ("ua:yahoo-proxy", "Yahoo Mail", "webmail"),
    ("net:apple-mpp", "Apple Mail", "unknown"),  # Privacy Protection hides the device
)
PLATFORMS = ("mobile", "desktop", "webmail", "unknown")


@dataclass(frozen=True)
class ReaderCount:
    """Readers (copies) that opened with one client on one platform."""

    client: str
    platform: str
    human: int  # copies opened by a person with it
    proxy: int  # copies fetched through the proxy ("opened, maybe")


def reader_of(row: ClientOpen) -> tuple[str, str]:
    """(client, platform) of one stored open."""
    if row.klass == "proxy":
        for code, client, platform in PROXIES:
            if code in row.reasons:
                return client, platform
        return "Other proxy", "unknown"
    family = ua_family(row.user_agent)
    if family in MAIL_PROGRAMS:
        client, platform = MAIL_PROGRAMS[family]
        return client, "mobile" if MOBILE.search(row.user_agent) else platform
    if family == OTHER:
        return "Other", "unknown"
    return family, "webmail"  # a browser: Edge, Opera, Firefox, Chrome, Safari


def count_readers(rows: Iterable[ClientOpen]) -> list[ReaderCount]:
    """Unique copies per client and platform, most readers first."""
    seen: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
    for row in rows:
        humans, proxied = seen.setdefault(reader_of(row), (set(), set()))
        (proxied if row.klass == "proxy" else humans).add(row.copy_id)
    counts = [
        ReaderCount(client, platform, len(humans), len(proxied))
        for (client, platform), (humans, proxied) in seen.items()
    ]
    return sorted(counts, key=lambda c: (-(c.human + c.proxy), c.client, c.platform))


def count_platforms(readers: Iterable[ReaderCount]) -> list[ReaderCount]:
    """The same readers summed by platform (client ""), in PLATFORMS order; a copy read
    in two clients on one platform counts once for each."""
    totals = {platform: [0, 0] for platform in PLATFORMS}
    for reader in readers:
        totals[reader.platform][0] += reader.human
        totals[reader.platform][1] += reader.proxy
    return [ReaderCount("", p, h, x) for p, (h, x) in totals.items() if h or x]
