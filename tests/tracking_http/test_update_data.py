"""`relay update-data` against a local server serving the vendors' published formats.

No test reaches the Internet: every source's address is replaced with
--source NAME=URL, the way an operator points it at a mirror.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from support.processes import free_port, run_relay

from tracking_http.classify import APPLE_RELAY_FILE, CRAWLER_FILE, SCANNER_FILE, NetworkData
from tracking_http.netdata import SOURCES
from tracking_http.networks import parse_address, read_labelled_networks

# The shapes are those of the published files (tracking_http/data/SOURCES.md).
APPLE_CSV = (
    "172.224.226.0/27,GB,GB-EN,London,\n"
    "172.224.226.32/27,GB,GB-EN,London,\n"  # adjacent: aggregated into one /26
    "104.28.0.0/24,US,US-CA,Los Angeles,\n"
    "2a02:26f7:b3c0:4000::/64,DE,,,\n"
)


def google_json(*prefixes: str) -> str:
    key = {True: "ipv6Prefix", False: "ipv4Prefix"}
    items = [{key[":" in p]: p} for p in prefixes]
    return json.dumps({"creationTime": "2026-11-30T14:45:42.000000", "prefixes": items})


MICROSOFT = json.dumps(
    [
        {
            "id": 9,
            "serviceArea": "Exchange",
            "urls": ["*.protection.outlook.com"],
            "ips": ["40.92.0.0/15", "40.107.0.0/16", "2a01:111:f403::/48"],
            "tcpPorts": "443",
        },
        {
            "id": 10,
            "serviceArea": "Exchange",
            "urls": ["*.mail.protection.outlook.com"],
            "ips": ["52.100.0.0/14", "104.47.0.0/17"],
            "tcpPorts": "25",
        },
        {"id": 46, "serviceArea": "SharePoint", "ips": ["13.107.136.0/22"], "tcpPorts": "443"},
    ]
)
PAGE = (
    "<html><body><h2>Networks</h2><p>CIDR: 62.209.50.0/24 CIDR: 91.209.104.0/24</p>"
    "<p>version 1.2.3/4 is not a network; 2620:10f:7000::/44</p></body></html>"
)
BODIES: dict[str, str] = {
    "apple-csv": APPLE_CSV,
    "prefixes-json": google_json("66.249.64.0/27", "66.249.64.32/27", "2001:4860:4801:10::/64"),
    "microsoft-endpoints": MICROSOFT,
    "cidr-text": PAGE,
}


class Published:
    """The vendors' addresses, on loopback; a test may change what one serves."""

    def __init__(self) -> None:
        self.bodies = {s.name: BODIES[s.format] for s in SOURCES}
        self.port = 0

    def args(self) -> list[str]:
        out: list[str] = []
        for source in SOURCES:
            out += ["--source", f"{source.name}=http://127.0.0.1:{self.port}/{source.name}"]
        return out

    async def handle(self, request: web.Request) -> web.Response:
        body = self.bodies.get(request.match_info["name"])
        return web.Response(text=body) if body is not None else web.Response(status=404)


@pytest.fixture
async def published() -> AsyncIterator[Published]:
    site = Published()
    app = web.Application()
    app.router.add_get("/{name}", site.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    site.port = runner.addresses[0][1]
    yield site
    await runner.cleanup()


async def update_data(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    config = tmp_path / "relay.toml"
    config.write_text(f'[tracking]\ndata_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    return await run_relay("update-data", "--config", str(config), *args)


def networks(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for label, network in read_labelled_networks(path):
        found.setdefault(label, []).append(str(network))
    return found


async def test_installs_every_list_and_the_classifier_reads_them(
    tmp_path: Path, published: Published
) -> None:
    code, out, err = await update_data(tmp_path, "--force", *published.args())
    assert (code, err) == (0, ""), err
    data = tmp_path / "data"
    assert f"installed {data / APPLE_RELAY_FILE}: 3 networks" in out
    assert networks(data / APPLE_RELAY_FILE) == {
        "apple": ["104.28.0.0/24", "172.224.226.0/26", "2a02:26f7:b3c0:4000::/64"]
    }
    crawlers = networks(data / CRAWLER_FILE)
    assert crawlers["bing"] == ["66.249.64.0/26", "2001:4860:4801:10::/64"]
    scanners = networks(data / SCANNER_FILE)
    assert scanners["microsoft"] == [
        "40.92.0.0/15",
        "40.107.0.0/16",
        "52.100.0.0/14",
        "104.47.0.0/17",
        "2a01:111:f403::/48",
    ]  # SharePoint's set is not Exchange Online Protection
    assert scanners["proofpoint"] == ["62.209.50.0/24", "91.209.104.0/24", "2620:10f:7000::/44"]
    # Lists with no address to fetch (SPF-published ones) are carried over from the snapshot.
    assert {"mimecast", "symantec", "google-workspace"} <= set(scanners)
    header = (data / SCANNER_FILE).read_text(encoding="utf-8")
    assert "written by `relay update-data` on 20" in header
    assert f"http://127.0.0.1:{published.port}/microsoft" in header
    assert sorted(p.name for p in data.iterdir()) == sorted(
        [APPLE_RELAY_FILE, CRAWLER_FILE, SCANNER_FILE]
    )  # no temporary file left behind
    loaded = NetworkData.load(data)
    assert loaded.scanners.label_of(parse_address("104.47.1.1")) == "microsoft"
    assert parse_address("172.224.226.40") in loaded.apple[1]


async def test_a_list_that_shrank_or_does_not_parse_is_refused(
    tmp_path: Path, published: Published
) -> None:
    # The shipped snapshot is what is installed at first: three networks are too few.
    code, _out, err = await update_data(tmp_path, *published.args())
    assert code == 1
    assert "apple's list shrank from 13745 to 3 networks" in err
    assert (await update_data(tmp_path, "--force", *published.args()))[0] == 0
    data = tmp_path / "data"
    before = {name: (data / name).read_bytes() for name in (APPLE_RELAY_FILE, CRAWLER_FILE)}
    published.bodies["apple"] = "172.224.226.0/27,GB,GB-EN,London,\n"  # 1 of 3 left
    published.bodies["bing"] = '{"creationTime": "x", "prefixes": '  # cut off
    code, out, err = await update_data(tmp_path, *published.args())
    assert code == 1
    assert "apple's list shrank from 3 to 1 networks; kept the installed" in err
    assert f"{CRAWLER_FILE} not updated" in err and "does not parse as prefixes-json" in err
    assert f"installed {data / SCANNER_FILE}" in out  # the others still go in
    assert {name: (data / name).read_bytes() for name in before} == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.bodies.update(apple="not,a,network\n"), "not a network"),
        (lambda p: p.bodies.pop("apple"), "HTTP 404"),
        (lambda p: p.bodies.update(apple="# nothing\n"), "not a network"),
    ],
)
async def test_broken_answers_are_named(
    tmp_path: Path, published: Published, change: Callable[[Published], object], message: str
) -> None:
    change(published)
    code, _out, err = await update_data(tmp_path, *published.args())
    assert code == 1
    assert f"{APPLE_RELAY_FILE} not updated" in err and message in err
    assert not (tmp_path / "data" / APPLE_RELAY_FILE).exists()


async def test_offline_is_one_clear_line_and_changes_nothing(tmp_path: Path) -> None:
    closed = free_port()
    args = [a for s in SOURCES for a in ("--source", f"{s.name}=http://127.0.0.1:{closed}/x")]
    code, out, err = await update_data(tmp_path, *args)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("relay: update-data: no source could be reached")
    assert "nothing was changed" in err
    assert not (tmp_path / "data").exists()


async def test_unknown_source_name_is_refused(tmp_path: Path) -> None:
    code, _out, err = await update_data(tmp_path, "--source", "nosuch=http://127.0.0.1:1/")
    assert code == 2
    assert "no source named 'nosuch'" in err
