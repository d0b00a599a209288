"""Both HTTP listeners against their own OpenAPI documents, with Schemathesis.

A real `relay serve` with data in it (a message through an aiosmtpd sink,
opened and clicked), then `st run --checks all` (every check; the examples,
coverage, fuzzing and stateful phases; a fixed seed) against
`/api/openapi.json` with the bearer token, and against
`/api/tracking-openapi.json` (whose server is the tracking listener). Any
finding fails the test: a 500, a status, media type or body the document
does not declare, a schema-valid request refused, an invalid one taken, an
operation that answers without the token it declares. A route added to
either listener is in its document (tests/tracking_http/test_openapi.py)
and so is fuzzed here too.

One operation is left out of the fuzzing: the live feed
(`GET /api/events/stream`) never ends, so no request to it completes.
`test_live_feed_answers_as_documented` checks its declared answers instead
(the stream's media type, the 400 and 401 error bodies).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.processes import (
    ADMIN_TOKEN,
    end_process,
    free_port,
    relay_toml,
    running_sink,
    spawn_relay,
    wait_for_port,
)

# Fixed, so `make test` is repeatable; the environment may ask for a deeper run:
# CONTRACT_SEED=7 CONTRACT_EXAMPLES=500 pytest tests/integration/test_api_contract.py
SEED = int(os.environ.get("CONTRACT_SEED", "19"))
MAX_EXAMPLES = int(os.environ.get("CONTRACT_EXAMPLES", "100"))  # per operation and phase
REQUEST_TIMEOUT = 10.0
AUTH = f"Authorization: Bearer {ADMIN_TOKEN}"
STREAM = "/api/events/stream"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"


@dataclass
class Running:
    admin: str
    tracking: str
    log: Path


def _message(subject: str, log_copy: bool) -> str:
    return (
        "From: Alice <alice@example.com>\r\n"
        "To: bob@example.net, carol@example.org\r\n"
        f"Subject: {subject}\r\n"
        "X-Track: all\r\n"
        + ("X-Track-Log: yes\r\n" if log_copy else "")
        + "MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        '<p>Hello, <a href="https://example.com/pricing?a=1&amp;b=2">our prices</a>.</p>\r\n'
        '<p><img src="https://example.com/logo.png" alt="logo"> and more words here.</p>\r\n'
    )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _hit(url: str) -> None:
    """A recipient's client fetching the pixel or following the link (not its target)."""
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(url, headers={"User-Agent": BROWSER}), timeout=10)
    except urllib.error.HTTPError as exc:  # the 302 of a click
        assert exc.code == 302, url


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`relay serve` with messages, copies and events; its log goes to a file (never a
    pipe nobody reads: a fuzzer's thousands of requests would fill it and stall it)."""
    workdir = tmp_path_factory.mktemp("contract")
    with running_sink() as (sink, sink_port):
        ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
        toml = relay_toml(f"smtp://127.0.0.1:{sink_port}", tracking='bot_click_window = "0s"')
        config = workdir / "relay.toml"
        config.write_text(toml.format(**ports), encoding="utf-8")
        log = workdir / "relay.log"
        proc = spawn_relay(config, log=log)
        try:
            for port in ports.values():
                wait_for_port(port, proc)
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as client:
                for n, log_copy in ((1, True), (2, False)):
                    rcpts = ["bob@example.net", "carol@example.org"]
                    client.sendmail("alice@example.com", rcpts, _message(f"Offer {n}", log_copy))
            delivered = sink.wait_for(2)
            base = f"http://127.0.0.1:{ports['tracking']}"
            for received in delivered:
                body = received.data.decode("utf-8", "replace")
                for url in re.findall(re.escape(base) + r"/[oc]/[A-Za-z0-9_.-]+", body):
                    _hit(url)
            yield Running(f"http://127.0.0.1:{ports['admin']}", base, log)
        finally:
            end_process(proc)


def schemathesis(workdir: Path, document: str, *extra: str) -> tuple[int, str]:
    """`st run` as an API user's tooling runs it; its exit status and output."""
    st = Path(sys.executable).with_name("st")
    command = [str(st) if st.exists() else (shutil.which("st") or "st"), "run", document]
    command += [
        "--checks=all",
        f"--seed={SEED}",
        f"--max-examples={MAX_EXAMPLES}",
        f"--request-timeout={REQUEST_TIMEOUT}",
        "--generation-database=none",
        "--workers=2",
        "--no-color",
        "--header",
        AUTH,
        *extra,
    ]
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=600, check=False
    )
    return done.returncode, done.stdout + done.stderr


def _report(output: str, log: Path) -> str:
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
    return output[-20000:] + "\n--- relay log (tail) ---\n" + "\n".join(tail)


def test_admin_api_passes_every_schemathesis_check(relay: Running, tmp_path: Path) -> None:
    started = time.monotonic()
    status, output = schemathesis(
        tmp_path, relay.admin + "/api/openapi.json", f"--exclude-path={STREAM}"
    )
    assert status == 0, _report(output, relay.log)
    print(output[output.find("SUMMARY") :], f"(in {time.monotonic() - started:.0f}s)")


def test_tracking_listener_passes_every_schemathesis_check(relay: Running, tmp_path: Path) -> None:
    status, output = schemathesis(
        tmp_path, relay.admin + "/api/tracking-openapi.json", f"--url={relay.tracking}"
    )
    assert status == 0, _report(output, relay.log)
    print(output[output.find("SUMMARY") :])


def _get(url: str, headers: dict[str, str]) -> tuple[int, str, bytes]:
    """Status, media type and the body's first line (a stream is never read to its end)."""
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=10)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()
    with response:
        return response.status, response.headers.get_content_type(), response.readline()


def test_live_feed_answers_as_documented(relay: Running) -> None:
    """The operation the fuzzer leaves out: its answers match what the document declares."""
    bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with urllib.request.urlopen(
        urllib.request.Request(relay.admin + "/api/openapi.json", headers=bearer), timeout=10
    ) as response:
        document = json.load(response)
    declared = document["paths"][STREAM]["get"]["responses"]
    error_schema = document["components"]["schemas"]["Error"]
    cases = [
        ("?type=open&recipient=bob%40example.net&last_event_id=0", bearer, 200),
        ("", {**bearer, "Last-Event-ID": "1"}, 200),
        ("?type=bogus", bearer, 400),
        ("?last_event_id=%C2%B2", bearer, 400),
        ("", {**bearer, "Last-Event-ID": "-1"}, 400),
        ("", {}, 401),
    ]
    for query, headers, expected in cases:
        status, media, body = _get(relay.admin + STREAM + query, headers)
        assert status == expected, (query, headers, status, body)
        assert media in declared[str(status)]["content"], (status, media)
        if status == 200:
            assert body.startswith(b"retry: "), body
        else:
            error = json.loads(body)
            assert set(error_schema["required"]) <= error.keys(), error
            assert all(isinstance(error[key], str) for key in error_schema["required"]), error
