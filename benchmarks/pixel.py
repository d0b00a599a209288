"""Pixel requests per second with every event stored, against a bare aiohttp GIF handler.

The servers run as separate processes in the same run and are loaded by wrk
(Debian's package) with the same connection count and duration: the bare
handler, then the relay with classification off (tracking.classify = false)
and on. Afterwards the events in the store are counted: every answered
request must be there. wrk sends one mail client's user agent throughout, so
the classifier's per-agent and per-address caches are warm, as they are for
the few agents and networks real traffic repeats. Then both relay runs are
repeated with many clients (``--clients``, default 20,000: more than the
classifier's caches hold): a wrk script sends each request from the next
address (X-Forwarded-For behind ``trusted_proxies``), half of them from
Apple's Private Relay list, half from elsewhere, with MPP's bare agent, a
mail client's or a browser's, so every lookup in the whole Apple list runs.

Last, the run under attack: the one-client load again while another process
holds 5,000 idle connections open (from 20 loopback addresses, 250 each,
reopening any the relay closes), against the same run without them.

    .venv/bin/python benchmarks/pixel.py [--connections 50] [--seconds 10] [--clients 20000]
        [--idle 5000]

With ``--workers 1,2`` it runs only the one-client load (classification on) once per
``tracking.workers`` count given, and reports each against the first. With
``--backends [--rounds 3]`` it compares a PostgreSQL store with SQLite's file.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from delivered import event_batches, spool_delivered
from smtp_load import free_port, private_postgres, wait_port  # the benchmarks' shared helpers

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from relay.core.config import StoreConfig  # noqa: E402
from relay.core.store import open_store  # noqa: E402
from relay.core.tokens import TokenCodec  # noqa: E402

BARE = r"""
import base64, sys
from aiohttp import web
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
async def pixel(request):
    return web.Response(body=GIF, content_type="image/gif",
                        headers={"Cache-Control": "no-store"})
app = web.Application()
app.router.add_get("/o/{token}.gif", pixel)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


UA_HEADER = "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3"


def at(path: Path) -> StoreConfig:
    return StoreConfig(path=str(path))


def store_toml(store: StoreConfig) -> str:
    return f'url = "{store.url}"' if store.url else f'path = "{store.path}"'


async def prepare_store(config: StoreConfig) -> tuple[str, int]:
    """Spool one message and deliver it; return a valid pixel token for its copy and its copy id."""
    store = open_store(config)
    await store.open()
    try:
        [(copy_id, _delivered_at)] = await spool_delivered(store, 1)
        codec = TokenCodec(await store.secrets())
        return codec.open_token(copy_id), copy_id
    finally:
        await store.close()


async def count_events(config: StoreConfig) -> int:
    store = open_store(config)
    await store.open()
    try:
        return sum([len(batch) async for batch in event_batches(store)])
    finally:
        await store.close()


AGENTS = (
    "Mozilla/5.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.3",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
)


def client_script(work: Path, clients: int) -> Path:
    """A wrk Lua script sending each request from the next of `clients` addresses."""
    rng = random.Random(7)
    apple = [
        line.split()[-1]
        for line in (REPO / "tracking_http" / "data" / "apple_private_relay.txt").open()
        if line.strip() and not line.startswith("#")
    ]
    addresses = []
    for n in range(clients):
        if n % 2:
            addresses.append(str(ipaddress.IPv4Address(rng.randrange(1 << 24, 223 << 24))))
            continue
        network = ipaddress.ip_network(rng.choice(apple))
        offset = rng.randrange(min(network.num_addresses, 1 << 16))
        addresses.append(str(network.network_address + offset))
    quoted = ",".join(f'"{a}"' for a in addresses)
    agents = ",".join(f'"{a}"' for a in AGENTS)
    script = work / "clients.lua"
    script.write_text(
        f"local addrs = {{{quoted}}}\nlocal agents = {{{agents}}}\nlocal i = 0\n"
        "request = function()\n  i = i + 1\n"
        '  return wrk.format("GET", nil, {["X-Forwarded-For"] = addrs[(i % #addrs) + 1],\n'
        '    ["User-Agent"] = agents[(i % #agents) + 1]})\nend\n'
    )
    return script


def wrk(
    url: str, connections: int, seconds: int, script: Path | None = None
) -> tuple[float, float, int]:
    """requests/s, p99 latency in ms, requests answered."""
    extra = ["-s", str(script)] if script else ["-H", UA_HEADER]
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99m is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99m.group(2)]
    answered = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} failed answers")
    return rate, float(p99m.group(1)) * scale, answered


ATTACKER = r"""
import asyncio, sys
port, count, sources = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
async def hold(source):
    while True:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0))
            await reader.read()  # until the relay closes it (idle_timeout): then again
            writer.close()
        except OSError:
            await asyncio.sleep(0.2)
async def main():
    holders = [hold(f"127.0.1.{1 + n % sources}") for n in range(count)]
    print("holding", flush=True)
    await asyncio.gather(*holders)
asyncio.run(main())
"""


def serve(args: list[str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return proc


def run_relay(
    work: Path,
    db: StoreConfig,
    token: str,
    classify: bool,
    connections: int,
    seconds: int,
    script: Path | None = None,
    idle: int = 0,
    workers: int = 1,
) -> tuple[float, float, int]:
    """`relay http` on the store, loaded by wrk: requests/s, p99 ms, requests answered.
    With idle > 0, an attacker holds that many idle connections open meanwhile."""
    http_port = free_port()
    config = work / "relay.toml"
    config.write_text(
        f'[tracking]\nlisten = "127.0.0.1:{http_port}"\nclassify = {str(classify).lower()}\n'
        'trusted_proxies = ["127.0.0.1/32"]\nmax_connections = 8192\n'
        f"workers = {workers}\n"
        f'[admin]\nlisten = "127.0.0.1:{free_port()}"\n[store]\n{store_toml(db)}\n'
    )
    command = ["-m", "relay", "http", "--config", str(config), "--log-level", "WARNING"]
    ours = serve([sys.executable, *command], http_port, work)
    if workers > 1:
        time.sleep(5)  # the tracking workers start after the first listener answers
    attacker = None
    try:
        if idle:
            attacker = subprocess.Popen(
                [sys.executable, "-c", ATTACKER, str(http_port), str(idle), "20"],
                stdout=subprocess.PIPE,
            )
            assert attacker.stdout is not None
            attacker.stdout.readline()
            time.sleep(3)  # the connects land
        return wrk(f"http://127.0.0.1:{http_port}/o/{token}.gif", connections, seconds, script)
    finally:
        if attacker is not None:
            attacker.kill()
            attacker.wait()
        ours.terminate()
        ours.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20_000)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--workers", default="", help="e.g. 1,2: compare tracking.workers")
    parser.add_argument(
        "--backends", action="store_true", help="only compare the PostgreSQL store with SQLite"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --backends")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    if args.backends:
        compare_backends(args)
        return
    if args.workers:
        compare_workers([int(n) for n in args.workers.split(",")], args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = at(work / "relay.db")
        token, _ = asyncio.run(prepare_store(db))
        bare_port = free_port()
        bare = serve([sys.executable, "-c", BARE, str(bare_port)], bare_port, work)
        try:
            b_rate, b_p99, _ = wrk(
                f"http://127.0.0.1:{bare_port}/o/{token}.gif", args.connections, args.seconds
            )
        finally:
            bare.terminate()
            bare.wait()
        off = run_relay(work, db, token, False, args.connections, args.seconds)
        on = run_relay(work, db, token, True, args.connections, args.seconds)
        script = client_script(work, args.clients)
        many_off = run_relay(work, db, token, False, args.connections, args.seconds, script)
        many_on = run_relay(work, db, token, True, args.connections, args.seconds, script)
        calm = run_relay(work, db, token, True, args.connections, args.seconds)
        attacked = run_relay(work, db, token, True, args.connections, args.seconds, idle=args.idle)
        stored = asyncio.run(count_events(db))
    print(f"bare aiohttp      : {b_rate:8.0f} req/s  p99 {b_p99:.1f} ms")
    for name, (rate, p99, _) in (("classify off", off), ("classify on", on)):
        print(f"relay {name:<12}: {rate:8.0f} req/s  p99 {p99:.1f} ms  ({args.connections} conns)")
    print(f"ratio relay / bare: {on[0] / b_rate:.2f} (target >= 0.7; p99 target < 20 ms)")
    print(f"ratio classify on / off: {on[0] / off[0]:.2f} (target >= 0.85)")
    for name, (rate, p99, _) in (("classify off", many_off), ("classify on", many_on)):
        print(f"relay {name:<12}: {rate:8.0f} req/s  p99 {p99:.1f} ms  ({args.clients} clients)")
    print(f"ratio classify on / off, {args.clients} clients: {many_on[0] / many_off[0]:.2f}")
    for name, (rate, p99, _) in (("calm", calm), (f"{args.idle} idle held", attacked)):
        print(f"relay {name:<16}: {rate:8.0f} req/s  p99 {p99:.1f} ms")
    print(
        f"ratio under attack / calm: {attacked[0] / calm[0]:.2f} (target >= 0.8; "
        f"p99 {attacked[1]:.1f} ms, target < 50 ms)"
    )
    answered = off[2] + on[2] + many_off[2] + many_on[2] + calm[2] + attacked[2]
    lost = answered - stored
    print(
        f"answered {answered}, stored {stored}: "
        + ("every answered request is stored" if lost <= 0 else f"{lost} LOST")
    )
    if lost > 0:
        raise SystemExit(1)


def compare_workers(counts: list[int], args: argparse.Namespace) -> None:
    """The one-client load against tracking.workers = each of counts, same store."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = at(work / "relay.db")
        token, _ = asyncio.run(prepare_store(db))
        results = [
            run_relay(work, db, token, True, args.connections, args.seconds, workers=n)
            for n in counts
        ]
        stored = asyncio.run(count_events(db))
    first = results[0][0]
    for n, (rate, p99, _) in zip(counts, results, strict=True):
        print(
            f"tracking.workers = {n:<3}: {rate:8.0f} req/s  p99 {p99:.1f} ms"
            f"  ({rate / first:.2f}x the first; {os.cpu_count()} cores)"
        )
    answered = sum(answered for _, _, answered in results)
    print(f"answered {answered}, stored {stored}" + (" LOST" if stored < answered else ""))
    if stored < answered:
        raise SystemExit(1)


def compare_backends(args: argparse.Namespace) -> None:
    """The one-client load (classification on), SQLite's file against a private PostgreSQL
    (Debian's package, fsync on, on loopback: tests/support/postgres.py), back to back, in
    ``--rounds`` rounds (SQLite, then PostgreSQL): the ratio is the median of the rounds'
    (single runs on this shared machine moved by up to 2x). Each store's events are
    counted at the end: every answered request must be there."""
    with private_postgres("pixels") as (_server, url):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            stores = {"sqlite": at(work / "relay.db"), "postgres": at_url(url)}
            tokens = {name: asyncio.run(prepare_store(store))[0] for name, store in stores.items()}
            answered = dict.fromkeys(stores, 0)
            ratios = []
            for _ in range(max(1, args.rounds)):
                rates = {}
                for name, store in stores.items():
                    rate, p99, done = run_relay(
                        work, store, tokens[name], True, args.connections, args.seconds
                    )
                    rates[name] = rate
                    answered[name] += done
                    print(f"{name:>8}: {rate:8.0f} req/s  p99 {p99:.1f} ms", flush=True)
                ratios.append(rates["postgres"] / rates["sqlite"])
            for name, store in stores.items():
                stored = asyncio.run(count_events(store))
                lost = " LOST" if stored < answered[name] else ""
                print(f"{name:>8}: answered {answered[name]}, stored {stored}{lost}")
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"ratio PostgreSQL / SQLite: {statistics.median(ratios):.2f}, the median of"
        f" {len(ratios)} rounds ({shown}) (target >= 0.8)"
    )


def at_url(url: str) -> StoreConfig:
    return StoreConfig(url=url)


if __name__ == "__main__":
    main()
