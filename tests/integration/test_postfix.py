"""Real Postfix on each side of the relay, the ways an ops team deploys it.

1. clients -> relay -> Postfix: swaks submits to `python -m relay serve`, whose
   upstream is a private Postfix instance relaying on to an aiosmtpd sink. The
   relay must record the queue id from Postfix's "250 2.0.0 Ok: queued as ..." reply.
2. MTA -> relay -> MTA: swaks submits to a Postfix instance whose `relayhost` is
   the relay; the relay tracks and delivers to the sink.
3. One Postfix on both sides: its content_filter is the relay, whose upstream is
   a second smtpd of the same Postfix with the filter off.

Postfix is Debian's package (`make sysdeps`), each instance private to its test.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.postfix import running_postfix
from support.processes import (
    Received,
    RelayProcess,
    SinkHandler,
    free_port,
    relay_toml,
    start_relay,
    stop_relay,
)

from relay.core.store.sqlite import SQLiteStore

RECIPIENTS = ["bob@example.net", "carol@example.org"]
LINKS = ["https://example.com/pricing?a=1", "https://example.org/docs"]
HTML = "<html><body><p>Hi, see <a href='{0}'>pricing</a> and <a href='{1}'>docs</a>.</p>" + (
    "</body></html>"
)


def swaks(port: int, subject: str) -> str:
    """Submit the HTML test message to both recipients; swaks' transcript is returned."""
    done = subprocess.run(
        [
            "swaks",
            "--server",
            f"127.0.0.1:{port}",
            "--from",
            "alice@example.com",
            "--to",
            ",".join(RECIPIENTS),
            "--header",
            f"Subject: {subject}",
            "--header",
            "Content-Type: text/html; charset=utf-8",
            "--body",
            HTML.format(*LINKS),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def relay_with_upstream(workdir: Path, upstream_port: int) -> RelayProcess:
    toml = relay_toml(
        f"smtp://127.0.0.1:{upstream_port}",
        smtp='allowed_networks = ["127.0.0.0/8"]',
        upstream="tls_verify = false",
    )
    return start_relay(workdir, toml)


@pytest.fixture
def relay_stopper() -> Iterator[list[RelayProcess]]:
    """Stops every relay a test started, and asserts each exited cleanly."""
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        code, err = stop_relay(relay)
        assert code == 0, err


def html_of(copy: Received) -> tuple[email.message.Message, str]:
    msg = email.message_from_bytes(copy.data, policy=email.policy.compat32)
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return msg, payload.decode("utf-8")


def hops(copy: Received) -> list[str]:
    """The copy's Received headers, newest first."""
    msg = email.message_from_bytes(copy.data, policy=email.policy.compat32)
    return [str(h) for h in msg.get_all("Received", [])]


def assert_tracked(copies: list[Received], relay: RelayProcess) -> dict[str, str]:
    """One tracked copy per recipient; returns recipient -> its HTML."""
    assert sorted(tuple(c.rcpt_tos) for c in copies) == [(r,) for r in sorted(RECIPIENTS)]
    bodies: dict[str, str] = {}
    for copy in copies:
        _, html = html_of(copy)
        assert html.count(f"{relay.tracking_url}/o/") == 1, html
        assert len(re.findall(re.escape(relay.tracking_url) + r"/c/", html)) == len(LINKS)
        for link in LINKS:
            assert f"href='{link}'" not in html and f'href="{link}"' not in html
        bodies[copy.rcpt_tos[0]] = html
    assert bodies[RECIPIENTS[0]] != bodies[RECIPIENTS[1]], "each copy has its own tokens"
    return bodies


async def api_detail(relay: RelayProcess) -> dict[str, Any]:
    """The only message's detail, once every copy is delivered (the sink sees it first)."""
    auth = {"Authorization": f"Bearer {relay.admin_token}"}
    detail: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=auth) as http:
        try:
            async with asyncio.timeout(30):
                while not detail or any(r["state"] != "delivered" for r in detail["recipients"]):
                    await asyncio.sleep(0.1)
                    detail = await only_message(http, relay)
        except TimeoutError:
            raise AssertionError(f"not delivered: {detail}") from None
    return detail


async def only_message(http: aiohttp.ClientSession, relay: RelayProcess) -> dict[str, Any]:
    async with http.get(f"{relay.admin_url}/api/messages") as answer:
        assert answer.status == 200
        [summary] = (await answer.json())["messages"]
    async with http.get(f"{relay.admin_url}/api/messages/{summary['id']}") as answer:
        assert answer.status == 200
        detail: dict[str, Any] = await answer.json()
    return detail


async def stored_queue_ids(relay: RelayProcess, message_id: str) -> dict[str, str]:
    """recipient -> the upstream queue id the relay recorded, read through the Store API."""
    store = SQLiteStore(str(relay.workdir / "relay.db"))
    await store.open()
    try:
        report = await store.message_report(message_id)
    finally:
        await store.close()
    assert report is not None
    return {r.address or "": r.copy.queue_id for r in report.recipients if r.copy is not None}


async def test_postfix_as_upstream(
    tmp_path: Path, sink: tuple[SinkHandler, int], relay_stopper: list[RelayProcess]
) -> None:
    handler, sink_port = sink
    with running_postfix(free_port(), f"[127.0.0.1]:{sink_port}") as postfix:
        relay = relay_with_upstream(tmp_path, postfix.port)
        relay_stopper.append(relay)
        transcript = swaks(relay.smtp_port, "through postfix")
        assert "250 2.0.0" in transcript
        copies = handler.wait_for(2, timeout=30)
        assert_tracked(copies, relay)
        postfix.wait_for_log(r"status=sent", count=2)
        sent = postfix.sent_queue_ids(sink_port)
        detail = await api_detail(relay)
        recorded = await stored_queue_ids(relay, detail["id"])
    assert set(sent) == set(RECIPIENTS)
    assert recorded == sent, (recorded, sent)
    for copy in copies:
        postfix_hop = hops(copy)[0]
        assert "by postfix.test (Postfix)" in postfix_hop
        assert f"id {sent[copy.rcpt_tos[0]]}" in postfix_hop
    assert {r["address"]: r["queue_id"] for r in detail["recipients"]} == sent
    assert all(r["last_reply"].endswith(f"queued as {r['queue_id']}") for r in detail["recipients"])


async def test_postfix_relays_through_the_relay(
    tmp_path: Path, sink: tuple[SinkHandler, int], relay_stopper: list[RelayProcess]
) -> None:
    handler, sink_port = sink
    relay = relay_with_upstream(tmp_path, sink_port)
    relay_stopper.append(relay)
    with running_postfix(free_port(), f"[127.0.0.1]:{relay.smtp_port}") as postfix:
        transcript = swaks(postfix.port, "from postfix")
        accepted = re.search(r"250 2\.0\.0 Ok: queued as ([0-9A-F]+)", transcript)
        assert accepted is not None, transcript
        copies = handler.wait_for(2, timeout=30)
        handed_over = postfix.wait_for_log(rf"{accepted.group(1)}: to=<.*status=sent", count=2)
    relayed = f"relay=127.0.0.1[127.0.0.1]:{relay.smtp_port}"
    assert all(relayed in line for line in handed_over), handed_over
    bodies = assert_tracked(copies, relay)
    detail = await api_detail(relay)
    assert detail["sender"] == "alice@example.com"
    assert sorted(r["address"] for r in detail["recipients"]) == sorted(RECIPIENTS)
    for copy in copies:
        path = hops(copy)
        assert "relay.test" in path[0], path
        assert any(
            f"by postfix.test (Postfix) with ESMTP id {accepted.group(1)}" in h for h in path
        )
    async with aiohttp.ClientSession() as http:
        pixel = re.search(r'src="([^"]+/o/[^"]+)"', bodies[RECIPIENTS[0]])
        assert pixel is not None
        async with http.get(pixel.group(1)) as answer:
            assert answer.status == 200 and answer.headers["Content-Type"] == "image/gif"


# One Postfix on both sides: an after-queue content filter hands every message to the
# relay, which gives the tracked copies back on a second listener where the filter is off.
REINJECT = """\
127.0.0.1:{port} inet n - n - 10 smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks
  -o smtpd_relay_restrictions=permit_mynetworks,reject
"""


async def test_one_postfix_filters_through_the_relay(
    tmp_path: Path, sink: tuple[SinkHandler, int], relay_stopper: list[RelayProcess]
) -> None:
    handler, sink_port = sink
    reinject = free_port()
    relay = relay_with_upstream(tmp_path, reinject)
    relay_stopper.append(relay)
    with running_postfix(
        free_port(),
        f"[127.0.0.1]:{sink_port}",
        overrides={"content_filter": f"smtp:[127.0.0.1]:{relay.smtp_port}"},
        services=REINJECT.format(port=reinject),
    ) as postfix:
        swaks(postfix.port, "filtered")
        copies = handler.wait_for(2, timeout=30)
        postfix.wait_for_log(r"status=sent", count=4)  # 2 to the relay, 2 to the sink
        sent = postfix.sent_queue_ids(sink_port)
    assert_tracked(copies, relay)
    detail = await api_detail(relay)
    recorded = await stored_queue_ids(relay, detail["id"])
    assert recorded == sent, (recorded, sent)  # the reinjected queue files went to the sink
    for copy in copies:
        path = hops(copy)
        assert sum("by postfix.test (Postfix)" in h for h in path) == 2, path  # in, and back
