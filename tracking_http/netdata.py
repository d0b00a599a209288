"""``relay update-data``: the published network lists, fetched, checked and installed.

The classifier's network data goes stale: Apple adds Private Relay egress
networks every week and vendors move their scanners. Each data file is built
from the vendors' own published addresses (SOURCES below; the formats are
described in tracking_http/data/SOURCES.md) and installed in
``tracking.data_dir`` only when every source of that file was fetched and
parsed, and no vendor's list shrank to less than half of what is installed:
a truncated download or a changed format must never empty a list that
decides what counts as a person. The file is written beside its final name
and renamed over it, so a reader sees the old file or the new one, never
half of one. The tracking server picks the new files up by itself
(HitLabeller.reload: on SIGHUP, and within tracking_http.app's DATA_CHECK_INTERVAL).
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tqdm import tqdm

from relay.core.files import replace_durably, temporary_beside
from tracking_http.classify import APPLE_RELAY_FILE, CRAWLER_FILE, SCANNER_FILE, data_file
from tracking_http.networks import Labelled, Network, read_labelled_networks

MAX_DOWNLOAD = 64 * 1024 * 1024  # Apple's CSV is ~13 MB and grows
FETCH_TIMEOUT = 120.0
CONNECT_TIMEOUT = 15.0
SHRINK_LIMIT = 0.5  # a list that lost more than half of its networks is refused
CHUNK = 64 * 1024
# IPv4 and IPv6 networks in free text (a vendor's documentation page).
CIDR_IN_TEXT = re.compile(
    r"(?<![\w.:/])(?:(?:\d{1,3}\.){3}\d{1,3}/\d{1,2}|[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}/\d{1,3})(?![\w.:/])"
)

Parser = Callable[[bytes], list[Network]]


class DataError(Exception):
    """A source that could not be fetched or parsed, or a list that shrank too much."""


class Unreachable(DataError):
    """No connection to the source's host: most likely no network at all."""


@dataclass(frozen=True)
class Source:
    """One published list: who publishes it, where, and how to read it."""

    name: str  # unique: --source NAME=URL
    label: str  # the reason's vendor part: net:scanner:<label>, net:crawler:<label>
    file: str  # the data file it feeds
    url: str
    format: str  # a key of PARSERS
    about: str  # one line for the file's header


def parse_apple_csv(body: bytes) -> list[Network]:
    """Apple's ``egress-ip-ranges.csv``: ``prefix,country,region,city,`` per line."""
    networks: list[Network] = []
    for number, line in enumerate(body.decode("utf-8").splitlines(), start=1):
        prefix = line.split(",", 1)[0].strip()
        if not prefix:
            continue
        try:
            networks.append(ipaddress.ip_network(prefix, strict=False))
        except ValueError:
            raise DataError(f"line {number}: not a network: {prefix[:60]!r}") from None
    return networks


def parse_prefixes_json(body: bytes) -> list[Network]:
    """Google's and Bing's ``{"prefixes": [{"ipv4Prefix": ...}, {"ipv6Prefix": ...}]}``."""
    data = _json(body)
    prefixes = data.get("prefixes") if isinstance(data, dict) else None
    if not isinstance(prefixes, list):
        raise DataError('no "prefixes" list')
    texts = [
        value
        for item in prefixes
        if isinstance(item, dict)
        for key in ("ipv4Prefix", "ipv6Prefix")
        if isinstance(value := item.get(key), str)
    ]
    return _networks(texts)


def parse_microsoft_endpoints(body: bytes) -> list[Network]:
    """Microsoft 365's endpoints web service: a list of endpoint sets; Exchange Online
    Protection is the Exchange sets whose URLs are ``*.protection.outlook.com`` and
    ``*.mail.protection.outlook.com`` (ids 9 and 10 today)."""
    data = _json(body)
    if not isinstance(data, list):
        raise DataError("not a list of endpoint sets")
    texts: list[str] = []
    for item in data:
        if not isinstance(item, dict) or item.get("serviceArea") != "Exchange":
            continue
        urls = item.get("urls") or []
        if any(isinstance(u, str) and u.endswith("protection.outlook.com") for u in urls):
            texts += [ip for ip in item.get("ips") or [] if isinstance(ip, str)]
    return _networks(texts)


def parse_cidrs_in_text(body: bytes) -> list[Network]:
    """Every network written out on a vendor's documentation page or text list."""
    text = body.decode("utf-8", "replace")
    return _networks(CIDR_IN_TEXT.findall(text))


PARSERS: Mapping[str, Parser] = {
    "apple-csv": parse_apple_csv,
    "prefixes-json": parse_prefixes_json,
    "microsoft-endpoints": parse_microsoft_endpoints,
    "cidr-text": parse_cidrs_in_text,
}


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise DataError(f"not JSON ({exc})") from None


def _networks(texts: Iterable[str]) -> list[Network]:
    networks: list[Network] = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise DataError(f"not a network: {text[:60]!r}") from None
    return networks


def aggregate(networks: Iterable[Network]) -> list[Network]:
    """As few networks as cover the same addresses (Apple's list: ~290k rows in)."""
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    out: list[Network] = list(ipaddress.collapse_addresses(v4))
    out += list(ipaddress.collapse_addresses(v6))
    return out


@dataclass
class Fetched:
    source: Source
    networks: list[Network]  # aggregated once, here: Apple's list takes a second or two
    published: int  # how many the source listed


@dataclass
class Report:
    """What one run did, for the command's output and exit code."""

    installed: dict[str, int] = field(default_factory=dict)  # file -> networks written
    refused: dict[str, str] = field(default_factory=dict)  # file -> why
    unreachable: list[str] = field(default_factory=list)  # sources with no connection

    @property
    def ok(self) -> bool:
        return not self.refused


async def fetch_source(
    session: aiohttp.ClientSession, source: Source, *, progress: bool = True
) -> Fetched:
    parse = PARSERS[source.format]
    try:
        async with session.get(source.url) as response:
            if response.status != 200:
                raise DataError(f"{source.url}: HTTP {response.status}")
            total = response.content_length
            if total is not None and total > MAX_DOWNLOAD:
                raise DataError(f"{source.url}: {total} bytes is more than any list should be")
            body = bytearray()
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=source.name,
                disable=None if progress else True,
                leave=False,
            ) as bar:
                async for chunk in response.content.iter_chunked(CHUNK):
                    body += chunk
                    bar.update(len(chunk))
                    if len(body) > MAX_DOWNLOAD:
                        raise DataError(f"{source.url}: larger than {MAX_DOWNLOAD} bytes")
    except aiohttp.ClientConnectionError as exc:
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            raise DataError(f"{source.url}: {exc}") from None
        raise Unreachable(f"{source.url}: {exc or type(exc).__name__}") from None
    except TimeoutError:
        raise DataError(f"{source.url}: no complete answer within {FETCH_TIMEOUT:.0f} s") from None
    try:
        networks = parse(bytes(body))
    except (DataError, UnicodeDecodeError) as exc:
        raise DataError(f"{source.url}: does not parse as {source.format}: {exc}") from None
    if not networks:
        raise DataError(f"{source.url}: no networks in it")
    return Fetched(source, aggregate(networks), len(networks))


def installed(path: Path) -> list[Labelled]:
    """The networks of the file in use; [] when it cannot be read (nothing to keep)."""
    try:
        return read_labelled_networks(path)
    except (OSError, ValueError):
        return []


def count_labels(networks: Iterable[Labelled]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label, _network in networks:
        counts[label] = counts.get(label, 0) + 1
    return counts


def render_file(
    name: str, fetched: list[Fetched], now: float, kept: Sequence[Labelled] = ()
) -> tuple[str, int]:
    """The data file's text (a header naming every source) and its number of networks.

    kept: networks of the installed file whose publisher has no address to fetch
    (a list only published as DNS records or by hand): carried over as they are."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    lines = [
        f"# {name}: written by `relay update-data` on {date}.",
        "# Refresh: relay update-data [--config FILE]; tracking_http/data/SOURCES.md says",
        "# what each list is. Format: `label CIDR` per line, `#` comments.",
        "#",
    ]
    lines += [
        f"# {f.source.name} ({f.source.label}): {f.source.about} <{f.source.url}> "
        f"({f.source.format}, {f.published} networks published)"
        for f in fetched
    ]
    if kept:
        labels = ", ".join(sorted({label for label, _ in kept}))
        lines.append(f"# kept from the installed file (no published address to fetch): {labels}")
    count = len(kept)
    for item in fetched:
        count += len(item.networks)
        lines.append("")
        lines += [f"{item.source.label} {network}" for network in item.networks]
    if kept:
        lines.append("")
        lines += [f"{label} {network}" for label, network in kept]
    return "\n".join(lines) + "\n", count


def check_shrink(name: str, before_counts: Mapping[str, int], fresh: Iterable[Labelled]) -> None:
    counts = count_labels(fresh)
    for label, before in before_counts.items():
        after = counts.get(label, 0)
        if before and after < before * SHRINK_LIMIT:
            raise DataError(
                f"{label}'s list shrank from {before} to {after} networks; "
                f"kept the installed {name} (--force installs it all the same)"
            )


def install(path: Path, text: str) -> None:
    """Written beside the final name, flushed, then renamed over it: all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_beside(path)
    try:
        temporary.write_text(text, encoding="utf-8")
        replace_durably(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


async def update(
    data_dir: Path,
    sources: Iterable[Source],
    *,
    progress: bool = True,
    force: bool = False,
    now: Callable[[], float] = time.time,
) -> Report:
    """Fetch every source, then install each file whose sources all came through (and
    whose lists kept at least half of their networks, unless force)."""
    by_file: dict[str, list[Source]] = {}
    for source in sources:
        by_file.setdefault(source.file, []).append(source)
    report = Report()
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for name, group in by_file.items():
            try:
                fetched = [await fetch_source(session, s, progress=progress) for s in group]
                old = installed(data_file(name, data_dir))
                labels = {s.label for s in group}
                kept = [(label, n) for label, n in old if label not in labels]
                text, count = render_file(name, fetched, now(), kept)
                fresh = [(f.source.label, n) for f in fetched for n in f.networks]
                if not force:
                    check_shrink(name, count_labels(n for n in old if n[0] in labels), fresh)
            except Unreachable as exc:
                report.unreachable.append(str(exc))
                report.refused[name] = str(exc)
                continue
            except DataError as exc:
                report.refused[name] = str(exc)
                continue
            install(data_dir / name, text)
            report.installed[name] = count
    return report


def override(sources: Iterable[Source], urls: Mapping[str, str]) -> list[Source]:
    """The sources with some addresses replaced (``--source LABEL=URL``: a mirror, a test)."""
    sources = list(sources)
    known = {s.name for s in sources}
    unknown = sorted(set(urls) - known)
    if unknown:
        raise DataError(f"no source named {unknown[0]!r}; known: {', '.join(sorted(known))}")
    return [
        Source(s.name, s.label, s.file, urls.get(s.name, s.url), s.format, s.about) for s in sources
    ]


async def run_update(
    data_dir: Path, urls: Mapping[str, str], *, progress: bool = True, force: bool = False
) -> Report:
    return await update(data_dir, override(SOURCES, urls), progress=progress, force=force)


SOURCES: tuple[Source, ...] = (
    Source(
        "apple",
        "apple",
        APPLE_RELAY_FILE,
        "https://mask-api.icloud.com/egress-ip-ranges.csv",
        "apple-csv",
        "iCloud Private Relay egress ranges (Apple)",
    ),
    Source(
        "googlebot",
        "google",
        CRAWLER_FILE,
        "https://developers.google.com/static/crawling/ipranges/common-crawlers.json",
        "prefixes-json",
        "Googlebot",
    ),
    Source(
        "google-special",
        "google",
        CRAWLER_FILE,
        "https://developers.google.com/static/crawling/ipranges/special-crawlers.json",
        "prefixes-json",
        "Google's special-case crawlers",
    ),
    Source(
        "google-fetcher",
        "google",
        CRAWLER_FILE,
        "https://developers.google.com/static/crawling/ipranges/user-triggered-fetchers.json",
        "prefixes-json",
        "Google's user-triggered fetchers",
    ),
    Source(
        "bing",
        "bing",
        CRAWLER_FILE,
        "https://www.bing.com/toolbox/bingbot.json",
        "prefixes-json",
        "Bingbot",
    ),
    Source(
        "microsoft",
        "microsoft",
        SCANNER_FILE,
        "https://endpoints.office.com/endpoints/worldwide"
        "?clientrequestid=b10c5ed1-bad1-445f-b386-b919946339a7",
        "microsoft-endpoints",
        "Exchange Online Protection / Defender for Office 365",
    ),
    Source(
        "proofpoint",
        "proofpoint",
        SCANNER_FILE,
        "https://proofpoint.my.site.com/support/PPSup_SupportInfo",
        "cidr-text",
        "Proofpoint's service networks (support information page)",
    ),
    Source(
        "barracuda",
        "barracuda",
        SCANNER_FILE,
        "https://campus.barracuda.com/product/emailgatewaydefense/doc/96023004/ip-analysis-inbound/",
        "cidr-text",
        "Barracuda Email Gateway Defense (documentation page)",
    ),
    Source(
        "cloudflare-email",
        "cloudflare-email",
        SCANNER_FILE,
        "https://developers.cloudflare.com/email-security/deployment/inline/reference/egress-ips/",
        "cidr-text",
        "Cloudflare Email Security egress (documentation page)",
    ),
)
