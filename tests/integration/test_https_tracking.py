"""HTTPS in front of the tracking links: the README's nginx recipe, run with Debian's nginx,
and the listener's own certificate, read again on SIGHUP."""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import ssl
import subprocess
from pathlib import Path

import aiohttp
import trustme
from support.processes import (
    REPO,
    SinkHandler,
    free_port,
    spawn_relay,
    wait_for_port,
)

MESSAGE = (
    b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: https\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b'<html><body><img src="https://example.com/logo.png" alt="Example">'
    b"<p>Hello Bob, the report is ready.</p></body></html>\r\n"
)
NGINX = "/usr/sbin/nginx"


def readme_nginx_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- nginx-recipe -->\n```nginx\n(.*?)```", text, re.DOTALL)
    assert found is not None, "the README's nginx recipe"
    return found.group(1)


def issue(tmp_path: Path, name: str) -> tuple[Path, Path, trustme.CA]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "t.example.com")
    pem, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(pem))
    cert.private_key_pem.write_to_path(str(key))
    return pem, key, ca


def start_relay(tmp_path: Path, tracking: str, ports: dict[str, int]) -> subprocess.Popen[bytes]:
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\n'
        f'[upstream]\nurl = "smtp://127.0.0.1:{ports["sink"]}"\n'
        f'[tracking]\nlisten = "127.0.0.1:{ports["tracking"]}"\n{tracking}'
        f'[admin]\nlisten = "127.0.0.1:{ports["admin"]}"\ntoken = "t0ken"\n',
        encoding="utf-8",
    )
    proc = spawn_relay(config)
    wait_for_port(ports["admin"], proc)
    return proc


def start_nginx(
    tmp_path: Path, port: int, upstream: int, pem: Path, key: Path
) -> subprocess.Popen[bytes]:
    block = readme_nginx_block()
    block = block.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;")
    block = block.replace("/etc/letsencrypt/live/t.example.com/fullchain.pem", str(pem))
    block = block.replace("/etc/letsencrypt/live/t.example.com/privkey.pem", str(key))
    block = block.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{upstream}")
    temp = tmp_path / "nginx"
    temp.mkdir()
    paths = "".join(
        f"{kind}_temp_path {temp / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"user root;\ndaemon off;\nworker_processes 1;\npid {temp / 'nginx.pid'};\n"
        f"error_log {temp / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{paths}{block}}}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(temp)], stderr=subprocess.PIPE)
    wait_for_port(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def pixel_path(handler: SinkHandler, smtp_port: int) -> str:
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@example.net"], MESSAGE)
    [delivered] = handler.wait_for(1)
    found = re.search(rb'src="https?://[^/"]+(/o/[^"]+)"', delivered.data)
    assert found is not None
    return found.group(1).decode()


async def recorded_ips(admin: int) -> list[str]:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer t0ken"}) as http:
        async with http.get(f"http://127.0.0.1:{admin}/api/events?type=open") as answer:
            return [e["ip"] for e in (await answer.json())["events"]]


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def test_the_readme_nginx_recipe_records_the_readers_own_address(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port(), "sink": sink_port}
    pem, key, ca = issue(tmp_path, "proxy")
    relay = start_relay(
        tmp_path, 'base_url = "https://t.example.com"\ntrusted_proxies = ["127.0.0.1/32"]\n', ports
    )
    nginx_port = free_port()
    nginx = start_nginx(tmp_path, nginx_port, ports["tracking"], pem, key)
    try:
        path = await asyncio.to_thread(pixel_path, handler, ports["smtp"])
        connector = aiohttp.TCPConnector(ssl=client_context(ca), local_addr=("127.0.0.9", 0))
        headers = {"User-Agent": "Thunderbird/128.0", "X-Forwarded-For": "198.51.100.66"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
            async with http.get(f"https://127.0.0.1:{nginx_port}{path}") as answer:
                assert answer.status == 200
                assert answer.headers["Content-Type"] == "image/gif"
        assert await recorded_ips(ports["admin"]) == ["127.0.0.9"]  # not the forged one
    finally:
        stop(nginx)
        stop(relay)


async def test_the_listeners_own_certificate_is_read_again_on_sighup(
    tmp_path: Path, sink: tuple[SinkHandler, int]
) -> None:
    handler, sink_port = sink
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port(), "sink": sink_port}
    first_pem, first_key, first_ca = issue(tmp_path, "first")
    tracking = (
        f'base_url = "https://127.0.0.1:{ports["tracking"]}"\n'
        f'tls_cert = "{first_pem}"\ntls_key = "{first_key}"\n'
    )
    relay = start_relay(tmp_path, tracking, ports)
    try:
        path = await asyncio.to_thread(pixel_path, handler, ports["smtp"])
        url = f"https://127.0.0.1:{ports['tracking']}{path}"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, ssl=client_context(first_ca)) as answer:
                assert answer.status == 200
            second_pem, second_key, second_ca = issue(tmp_path, "second")
            first_pem.write_bytes(second_pem.read_bytes())  # renewed in place, as certbot does
            first_key.write_bytes(second_key.read_bytes())
            relay.send_signal(signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.05)
                try:
                    async with aiohttp.ClientSession() as fresh:  # a new handshake
                        async with fresh.get(url, ssl=client_context(second_ca)) as answer:
                            assert answer.status == 200
                            break
                except aiohttp.ClientConnectorCertificateError:
                    continue
            else:
                raise AssertionError("the renewed certificate was never presented")
    finally:
        stop(relay)
