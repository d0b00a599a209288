"""Every dashboard page people use, in Chromium at a desktop's and a phone's width.

One relay whose upstream is down at first, so its copies wait in the queue:
a tagged, logged campaign to Bob (its HTML tries every way of loading
something: our pixel, a remote image, stylesheet and font, a script, a meta
refresh, a form) and an invoice to Dan. At 1280 and 390 px each page
(messages, a message, the queue, the tags, a tag) must not scroll sideways
and axe-core must report no serious or critical violation. The preview must
load nothing from anywhere but the admin listener; a search finds the invoice
by its recipient; a retry from the queue page delivers the copy once the
upstream is back.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiosmtpd.controller import Controller
from playwright.async_api import Browser, BrowserContext, Page, Request, expect
from support.messages import html_mail
from support.processes import RelayProcess, free_port, start_relay, stop_relay

TOKEN = "t0ken"
AXE = Path(__file__).resolve().parent / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
WAIT_MS = 20_000
AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Mobile/15E148",
    "Microsoft Outlook 16.0.17928; Microsoft Outlook 16.0.17928; Pro (16.0.17928.20114)",
)

RELAY_TOML = """
[smtp]
listen = "127.0.0.1:{{smtp}}"
hostname = "relay.test"

[tracking]
listen = "127.0.0.1:{{tracking}}"
base_url = "http://127.0.0.1:{{tracking}}"

[admin]
listen = "127.0.0.1:{{admin}}"
token = "t0ken"

[store]
path = "relay.db"

[upstream]
url = "smtp://127.0.0.1:{upstream}"
retry_schedule = ["1h"]
"""


class Sink:
    """The upstream, once it is back: keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 2.0.0 queued as TEST1"


@pytest.fixture
def upstream_port() -> int:
    return free_port()


@pytest.fixture
def down_relay(tmp_path: Path, upstream_port: int) -> Iterator[RelayProcess]:
    running = start_relay(tmp_path, RELAY_TOML.format(upstream=upstream_port))
    yield running
    code, err = stop_relay(running)
    assert code == 0, err


@pytest.fixture
async def remote() -> AsyncIterator[tuple[TestServer, list[str]]]:
    """Anyone's tracker: a loopback server that notes every request it gets."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path_qs)
        return web.Response(body=b"", content_type="image/gif")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, seen
    await server.close()


def campaign_html(tracking: str, remote: str) -> str:
    return (
        "<!DOCTYPE html><html><head>"
        f'<meta http-equiv="refresh" content="0;url={remote}/refresh">'
        f'<link rel="stylesheet" href="{remote}/style.css">'
        f"<style>@import url({remote}/import.css); @font-face {{font-family: x;"
        f" src: url({remote}/font.woff)}} body {{background: url({remote}/bg.png)}}</style>"
        "</head><body>"
        '<h1 id="hello">Spring is here</h1><p>Hi Bob, 20% off everything.</p>'
        f'<img src="{tracking}/o/preview-test.gif" alt="">'
        f'<img src="{remote}/pixel.gif" alt="" width="1" height="1">'
        f'<script src="{remote}/script.js"></script>'
        f"<script>fetch('{remote}/fetch'); new Image().src = '{remote}/js.gif';</script>"
        f'<form action="{remote}/form" method="post"><button>Go</button></form>'
        f'<a href="{remote}/offer">See the offer</a>'
        "</body></html>"
    )


def send(relay: RelayProcess, subject: str, to: str, html: str, **headers: str) -> None:
    mail = html_mail(html, subject, to, f"{subject}: the plain text part.", **headers)
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=20) as client:
        client.send_message(mail)


async def log_in(page: Page, relay: RelayProcess) -> None:
    await page.goto(relay.admin_url + "/login")
    await page.fill("input[name=token]", TOKEN)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Messages")


WIDEST = """() => [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
    .filter((e) => !e.parentElement.closest(".table-box, .chart-box, pre"))
    .slice(0, 5)
    .concat([...document.querySelectorAll("body *")]
        .filter((e) => e.scrollWidth > e.clientWidth + 1)
        .filter((e) => getComputedStyle(e).overflowX === "visible").slice(0, 5))
    .map((e) => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)"""


async def no_sideways_scroll(page: Page) -> None:
    """Measured once the page has loaded: an assertion on its text can pass before its
    stylesheet applies (seen once under load: 521 px wide, no element to blame)."""
    await page.wait_for_load_state("load")
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    if widths[0] > widths[1]:
        widest = await page.evaluate(WIDEST)
        raise AssertionError(f"{page.url}: {widths[0]} px wide in {widths[1]} px: {widest}")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations (frames left out: the preview's is
    sandboxed, so no script of axe's can run in it, by design)."""
    assert AXE.exists(), "axe-core is missing: make test installs it (tests/browser)"
    await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => (await axe.run(document, {iframes: false, resultTypes: ["violations"]}))
            .violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                          nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" "))}))"""
    )
    return found


async def wait_for_queue(relay: RelayProcess, page: Page, count: int) -> None:
    """Until the queue page lists count deferred copies (the upstream is down)."""
    deadline = time.monotonic() + 30
    while True:
        await page.goto(relay.admin_url + "/queue")
        if await page.locator("table.queue:not(.bounced) .state-deferred").count() >= count:
            return
        assert time.monotonic() < deadline, "the copies never got deferred"
        await page.wait_for_timeout(300)


async def new_context(browser: Browser, width: str, **options: Any) -> BrowserContext:
    w, h = WIDTHS[width]
    return await browser.new_context(viewport={"width": w, "height": h}, **options)


NEWSLETTER = (
    "<html><body><h1>Spring is here</h1><p>Hi, 20% off everything this week:"
    ' <a href="{remote}/offer">see the offer</a> or <a href="{remote}/shop">the shop</a>.</p>'
    "</body></html>"
)


def read(url: str, agent: str) -> None:
    """A reader's mail program fetching a pixel or following a link (not the redirect)."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    request = urllib.request.Request(url, headers={"User-Agent": agent})
    try:
        urllib.request.build_opener(Stay).open(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        assert exc.code == 302, url


async def delivered(outbox: Path, count: int) -> list[str]:
    """The HTML of each delivered .eml, oldest first."""
    deadline = time.monotonic() + 20
    while True:
        files = sorted((outbox / "new").glob("*.eml")) if (outbox / "new").exists() else []
        if len(files) >= count:
            break
        assert time.monotonic() < deadline, "nothing was delivered"
        await asyncio.sleep(0.1)
    out = []
    for file in files:
        parsed = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
        body = parsed.get_body(("html",))  # type: ignore[attr-defined]
        out.append(str(body.get_content()) if body is not None else "")
    return out


async def test_pages_fit_both_widths_and_pass_axe(
    relay: RelayProcess,
    browser: Browser,
    remote: tuple[TestServer, list[str]],
    output_dir: Path,
) -> None:
    """A campaign delivered to three readers, opened in three mail programs and clicked."""
    server, _seen = remote
    html = NEWSLETTER.format(remote=str(server.make_url("")).rstrip("/"))
    readers = ("bob@example.net", "carol@example.org", "erin@example.com")
    await asyncio.to_thread(
        send, relay, "Spring offer", ", ".join(readers), html, X_Tag="spring", X_Track_Log="yes"
    )
    await asyncio.to_thread(send, relay, "Invoice 42", "dan@example.com", "<p>Due soon.</p>")
    copies = [h for h in await delivered(relay.workdir / "outbox", 4) if "Spring" in h]
    assert len(copies) == 3
    for copy, agent in zip(copies, AGENTS, strict=True):
        for url in re.findall(re.escape(relay.tracking_url) + r"/o/[^\"']+", copy):
            await asyncio.to_thread(read, url, agent)
    clicks = re.findall(re.escape(relay.tracking_url) + r"/c/[^\"']+", copies[0])
    await asyncio.to_thread(read, clicks[0], AGENTS[0])
    for width in WIDTHS:
        # axe is injected as a script of its own: only these contexts set the pages' CSP aside.
        context = await new_context(browser, width, bypass_csp=True)
        page = await context.new_page()
        await log_in(page, relay)
        message_link = page.locator("td.subject a", has_text="Spring offer")
        pages = {
            "messages": relay.admin_url + "/",
            "message": relay.admin_url + (await message_link.get_attribute("href") or ""),
            "queue": relay.admin_url + "/queue",
            "tags": relay.admin_url + "/tags",
            "tag": relay.admin_url + "/tags/spring",
            "webhooks": relay.admin_url + "/webhooks",
            "charts": relay.admin_url + "/charts",
        }
        for name, url in pages.items():
            answer = await page.goto(url)
            assert answer is not None and answer.status == 200, url
            if name == "tag":
                await expect(page.locator(".cards")).to_contain_text("Opened")
                await expect(page.locator("table.clients")).to_contain_text("Thunderbird")
            await no_sideways_scroll(page)
            assert await axe_violations(page) == [], f"{name} at {width}"
            if name in ("messages", "message", "tag"):
                shot = output_dir / f"{name}-{WIDTHS[width][0]}.png"
                await page.screenshot(path=str(shot), full_page=name != "message")
        await context.close()


async def test_the_preview_loads_nothing_remote(
    down_relay: RelayProcess, browser: Browser, remote: tuple[TestServer, list[str]]
) -> None:
    relay = down_relay
    server, seen = remote
    base = str(server.make_url("")).rstrip("/")
    html = campaign_html(relay.tracking_url, base)
    await asyncio.to_thread(send, relay, "Spring offer", "bob@example.net", html, X_Track_Log="yes")
    context = await new_context(browser, "desktop")  # the pages' own CSP, as a user has it
    requests: list[str] = []

    def note(request: Request) -> None:
        requests.append(request.url)

    context.on("request", note)
    blocked: list[str] = []  # stopped by the CSP inside the browser: never sent

    def stopped(request: Request) -> None:
        if request.failure == "csp":
            blocked.append(request.url)

    context.on("requestfailed", stopped)
    page = await context.new_page()
    await log_in(page, relay)
    await page.click("td.subject a")
    frame = page.frame_locator("iframe.preview-frame")
    await expect(frame.locator("#hello")).to_have_text("Spring is here")
    await expect(page.locator("pre.mail-text")).to_contain_text("the plain text part", timeout=1)
    await page.wait_for_timeout(1500)  # time for anything that would load late
    await frame.locator("a").click()  # a link opens nothing (no popups in the sandbox)
    await frame.locator("form button").click()  # a form sends nothing (no forms either)
    await page.wait_for_timeout(500)
    await expect(frame.locator("#hello")).to_have_text("Spring is here")
    assert seen == []  # anyone's tracker got not one request
    sent = [u for u in requests if not u.startswith(relay.admin_url + "/") and u not in blocked]
    assert sent == [], sent  # nor did our tracking listener, nor any other host
    assert any("/o/preview-test.gif" in u for u in blocked)  # the CSP did stop our pixel
    api = await page.request.get(
        relay.admin_url + "/api/events", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert (await api.json())["events"] == []
    await context.close()


async def test_search_finds_a_message_by_recipient_and_a_retry_delivers(
    down_relay: RelayProcess, browser: Browser, upstream_port: int, output_dir: Path
) -> None:
    relay = down_relay
    await asyncio.to_thread(send, relay, "Spring offer", "bob@example.net", "<p>Hi</p>")
    await asyncio.to_thread(send, relay, "Invoice 42", "dan@example.com", "<p>Due.</p>")
    for width in WIDTHS:
        context = await new_context(browser, width)
        page = await context.new_page()
        await log_in(page, relay)
        await page.fill("input[name=recipient]", "dan@example.com")
        await page.click("form.filters button[type=submit]")
        await expect(page.locator("td.subject a")).to_have_text(["Invoice 42"])
        assert "recipient=dan%40example.com" in page.url
        await no_sideways_scroll(page)
        await context.close()

    sink = Sink()
    context = await new_context(browser, "phone")
    page = await context.new_page()
    await log_in(page, relay)
    await wait_for_queue(relay, page, 2)
    await page.screenshot(path=str(output_dir / "queue-390.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 800})
    await no_sideways_scroll(page)
    await page.screenshot(path=str(output_dir / "queue-1280.png"))
    await page.set_viewport_size({"width": 390, "height": 844})
    controller = Controller(sink, hostname="127.0.0.1", port=upstream_port)
    controller.start()  # the upstream is back; the copies would wait an hour by themselves
    try:
        row = page.locator("table.queue tr", has_text="dan@example.com")
        await row.locator("button.retry").click()
        await expect(page.locator(".note-done")).to_have_text("1 copy will be tried again now.")
        deadline = time.monotonic() + 20
        while not sink.received:
            assert time.monotonic() < deadline, "the retried copy was not delivered"
            await asyncio.sleep(0.2)
        assert b"Invoice 42" in sink.received[0] and len(sink.received) == 1
        await page.reload()
        await expect(page.locator("table.queue", has_text="Spring offer")).to_have_count(1)
        await expect(page.locator("table.queue:not(.bounced)")).not_to_contain_text(
            "dan@example.com", timeout=WAIT_MS
        )
    finally:
        controller.stop()
    await context.close()
