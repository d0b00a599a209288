"""Every message of the shared corpus through the real relay, checked on arrival.

One `python -m relay serve`, one aiosmtpd sink, a few SMTP connections
pipelining the whole corpus (each message to its own recipient, so each
delivered copy is matched to what was sent). For each copy: delivered; every
leaf but the rewritten HTML bodies byte-identical; each rewritten HTML part,
pixel removed and links resolved through the click endpoint, equal to the
original; lines within 998 octets; the same structure. A message left
untracked arrives byte-identical and its reason is shown by the admin API.
"""

from __future__ import annotations

import base64
import http.client
import json
import quopri
import smtplib
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from integration.relayed_checks import (
    check_relayed,
    click_resolver,
    expected_copy,
    on_the_wire,
    without_relay_headers,
)
from support.processes import (
    RelayProcess,
    free_port,
    relay_command,
    relay_env,
    relay_toml,
    running_sink,
    wait_for_port,
)

from relay.smtp.message import header_block_clean

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
CONNECTIONS = 4


def relay_config(sink_port: int) -> str:
    return relay_toml(f"smtp://127.0.0.1:{sink_port}", upstream="max_connections = 8")


def strip_mbox_from(raw: bytes) -> bytes:
    """A leading mbox "From " line is the mailbox's, not the message's."""
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


def wrap_html(html: bytes, cte: str) -> bytes:
    """An HTML template as the HTML half of a multipart/alternative message (CRLF)."""
    body = {"quoted-printable": quopri.encodestring(html), "base64": base64.encodebytes(html)}
    encoded = body.get(cte, html).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = (
        "From: Corpus <corpus@example.com>\r\nTo: reader@example.net\r\nSubject: template\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="corpus-b"\r\n\r\n'
        "--corpus-b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain text\r\n"
        "--corpus-b\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    )
    return head.encode() + encoded + b"\r\n--corpus-b--\r\n"


def corpus_inputs() -> dict[str, bytes]:
    """Name -> the bytes a client sends, for every corpus file (and HTML template x3)."""
    inputs: dict[str, bytes] = {}
    for path in sorted(p for p in (CORPUS / "mime").rglob("*") if p.is_file()):
        inputs[str(path.relative_to(CORPUS))] = on_the_wire(strip_mbox_from(path.read_bytes()))
    for path in sorted(p for p in (CORPUS / "html").rglob("*") if p.is_file()):
        for cte in ("quoted-printable", "base64", "8bit"):
            wrapped = on_the_wire(wrap_html(path.read_bytes(), cte))
            inputs[f"{path.relative_to(CORPUS)}[{cte}]"] = wrapped
    return inputs


ALL_INPUTS = corpus_inputs()
# A bare CR, bare LF or NUL in the header block is refused (550 5.6.0), not relayed.
REFUSED = {name: raw for name, raw in ALL_INPUTS.items() if not header_block_clean(raw)}
INPUTS = {name: raw for name, raw in ALL_INPUTS.items() if name not in REFUSED}
NAMES = sorted(INPUTS)
RECIPIENT = {name: f"m{i}@corpus.test" for i, name in enumerate(NAMES)}


@dataclass
class Relayed:
    relay: RelayProcess
    delivered: dict[str, list[bytes]]  # recipient -> the copies the sink received
    notes: dict[str, str]  # recipient -> the copy's rewrite_note in the admin API
    tracking: dict[str, dict[str, Any]]  # recipient -> the message's tracking decision


def send_all(port: int, names: list[str]) -> None:
    """One connection, every message of names pipelined through it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for name in names:
            refused = client.sendmail("corpus@example.com", [RECIPIENT[name]], INPUTS[name])
            assert not refused, (name, refused)


def admin_reports(relay: RelayProcess) -> Iterator[dict[str, Any]]:
    """Every message's detail from the admin API."""
    conn = http.client.HTTPConnection("127.0.0.1", relay.admin_port, timeout=10)
    auth = {"Authorization": "Bearer t0ken"}

    def get(path: str) -> dict[str, Any]:
        conn.request("GET", path, headers=auth)
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 200, (path, body[:200])
        parsed: dict[str, Any] = json.loads(body)
        return parsed

    cursor: str | None = ""
    while cursor is not None:
        page = get("/api/messages?limit=500" + (f"&cursor={cursor}" if cursor else ""))
        for summary in page["messages"]:
            yield get(f"/api/messages/{summary['id']}")
        cursor = page["next"]


def start_quiet_relay(workdir: Path, toml: str) -> RelayProcess:
    """start_relay, but logging to a file: hundreds of messages would fill a pipe nobody reads."""
    ports = {"smtp": free_port(), "tracking": free_port(), "admin": free_port()}
    config = workdir / "relay.toml"
    config.write_text(toml.format(**ports), encoding="utf-8")
    with (workdir / "relay.log").open("wb") as log:
        proc = subprocess.Popen(
            relay_command("serve", "--config", str(config), "--log-level", "WARNING"),
            cwd=workdir,
            env=relay_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    for port in ports.values():
        wait_for_port(port, proc)
    return RelayProcess(proc, ports["smtp"], ports["tracking"], ports["admin"], "t0ken", workdir)


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relayed]:
    workdir = tmp_path_factory.mktemp("corpus-relay")
    with running_sink() as (sink, sink_port):
        relay = start_quiet_relay(workdir, relay_config(sink_port))
        try:
            batches = [NAMES[i::CONNECTIONS] for i in range(CONNECTIONS)]
            errors: list[BaseException] = []

            def run(batch: list[str]) -> None:
                try:
                    send_all(relay.smtp_port, batch)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(b,)) for b in batches]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, errors
            wanted = set(RECIPIENT.values())
            with sink.arrived:  # every recipient, not a count: a duplicate must not hide a loss
                sink.arrived.wait_for(
                    lambda: wanted <= {m.rcpt_tos[0] for m in sink.messages}, timeout=150
                )
                received = list(sink.messages)
            delivered: dict[str, list[bytes]] = {}
            for copy in received:
                delivered.setdefault(copy.rcpt_tos[0], []).append(copy.data)
            notes, tracking = {}, {}
            for report in admin_reports(relay):
                for recipient in report["recipients"]:
                    notes[recipient["address"]] = recipient["rewrite_note"]
                    tracking[recipient["address"]] = report["tracking"]
            yield Relayed(relay, delivered, notes, tracking)
        finally:
            relay.proc.terminate()
            assert relay.proc.wait(timeout=30) == 0, (workdir / "relay.log").read_text()


def test_the_corpus_is_there() -> None:
    assert sum(1 for name in NAMES if name.startswith("mime/")) > 100
    assert sum(1 for name in NAMES if name.startswith("html/")) > 60


def test_header_blocks_with_nul_are_refused(relayed: Relayed) -> None:
    assert REFUSED  # the corpus has one: MimeKit's unexpected-null-bytes-in-headers.eml
    with smtplib.SMTP("127.0.0.1", relayed.relay.smtp_port, timeout=60) as client:
        for raw in REFUSED.values():
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("corpus@example.com", ["refused@corpus.test"], raw)
            assert refused.value.smtp_code == 550
            assert refused.value.smtp_error.startswith(b"5.6.0 ")


def test_each_message_is_delivered_exactly_once(relayed: Relayed) -> None:
    counts = {rcpt: len(relayed.delivered.get(rcpt, [])) for rcpt in RECIPIENT.values()}
    assert {rcpt: n for rcpt, n in counts.items() if n != 1} == {}


@pytest.mark.parametrize("name", NAMES)
def test_relayed_copy(relayed: Relayed, name: str) -> None:
    recipient = RECIPIENT[name]
    assert relayed.delivered.get(recipient), "delivered"
    sent = expected_copy(INPUTS[name])
    got = without_relay_headers(sent, relayed.delivered[recipient][0])
    base = relayed.relay.tracking_url
    changed = check_relayed(sent, got, base, click_resolver(relayed.relay.tracking_port))
    if changed == 0:  # relayed as it came: the reason is on record
        tracking = relayed.tracking[recipient]
        untracked = not (tracking["opens"] or tracking["clicks"])
        assert relayed.notes[recipient] or untracked, "an untouched copy says why"
    template = CORPUS / name.split("[")[0]
    if name.startswith("html/") and b"\x00" not in template.read_bytes():  # UTF-16: left alone
        assert changed == 1, relayed.notes[recipient]
