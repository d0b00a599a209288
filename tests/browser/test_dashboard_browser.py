"""The dashboard in a real browser, fed by a real relay.

A message goes through `python -m relay serve` into a maildir; its delivered
HTML is served from a loopback aiohttp server and opened in Chromium, so the
pixel and the click go to the relay's tracking server exactly as from a mail
program. A second page, already open on the dashboard, must show them on the
live feed without a reload.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import smtplib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Dialog, Page, expect
from support.messages import html_mail
from support.processes import RelayProcess

TOKEN = "t0ken"
WAIT_MS = 20_000
READER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0 Safari/537.36"
)
EVIL_SUBJECT = '<script>alert("subject")</script><img src=x onerror=alert(2)> & <b>bold</b>'


def send(relay: RelayProcess, subject: str, html: str) -> None:
    with smtplib.SMTP("127.0.0.1", relay.smtp_port, timeout=20) as client:
        client.send_message(html_mail(html, subject))


async def delivered_html(outbox: Path, count: int = 1) -> str:
    """The HTML part of the newest .eml the maildir upstream wrote, decoded."""
    deadline = time.monotonic() + 20
    while True:
        files = sorted((outbox / "new").glob("*.eml")) if (outbox / "new").exists() else []
        if len(files) >= count:
            break
        assert time.monotonic() < deadline, f"no delivered .eml in {outbox}"
        await asyncio.sleep(0.1)
    parsed = email.message_from_bytes(files[-1].read_bytes(), policy=email.policy.default)
    body = parsed.get_body(("html",))  # type: ignore[attr-defined]
    assert body is not None
    return str(body.get_content())


@pytest.fixture
async def web_pages() -> AsyncIterator[tuple[TestServer, dict[str, str]]]:
    """A loopback server for the mail's HTML (/mail.html) and the link's target (/landing)."""
    content: dict[str, str] = {}

    async def mail(_request: web.Request) -> web.Response:
        return web.Response(text=content["mail"], content_type="text/html")

    async def landing(_request: web.Request) -> web.Response:
        return web.Response(text="<h1 id=landed>Landed</h1>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/mail.html", mail)
    app.router.add_get("/landing", landing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, content
    await server.close()


async def log_in(page: Page, relay: RelayProcess, token: str = TOKEN) -> None:
    await page.goto(relay.admin_url + "/")
    await expect(page).to_have_url(relay.admin_url + "/login")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")


async def test_open_and_click_appear_on_the_live_feed(
    relay: RelayProcess,
    browser: Browser,
    web_pages: tuple[TestServer, dict[str, str]],
    output_dir: Path,
) -> None:
    server, content = web_pages
    target = str(server.make_url("/landing"))
    html = (
        f'<html><body><p>Hi Bob, <a id="offer" href="{target}">see the offer</a></p></body></html>'
    )
    await asyncio.to_thread(send, relay, "Spring offer", html)
    content["mail"] = await delivered_html(relay.workdir / "outbox")
    assert relay.tracking_url + "/o/" in content["mail"]

    admin = await browser.new_context(viewport={"width": 1280, "height": 800})
    dashboard = await admin.new_page()
    await log_in(dashboard, relay)
    await expect(dashboard.locator("td.subject")).to_have_text("Spring offer")
    await expect(dashboard.locator("#feed-state")).to_have_attribute("data-state", "open")

    # The recipient: no admin cookie, and a desktop browser's agent (not "HeadlessChrome").
    reader = await (await browser.new_context(user_agent=READER_AGENT)).new_page()
    async with reader.expect_response(lambda r: "/o/" in r.url) as pixel:
        await reader.goto(str(server.make_url("/mail.html")))
    assert (await pixel.value).status == 200
    feed = dashboard.locator("#feed")
    await expect(feed.locator(".feed-item.kind-open")).to_have_count(1, timeout=WAIT_MS)
    await expect(feed).to_contain_text("bob@example.net")

    await reader.click("#offer")
    await expect(reader).to_have_url(target)
    await expect(reader.locator("#landed")).to_have_text("Landed")
    await expect(feed.locator(".feed-item.kind-click")).to_have_count(1, timeout=WAIT_MS)
    await expect(feed).to_contain_text(target)

    await dashboard.screenshot(path=str(output_dir / "messages.png"))  # the feed, filled live
    await dashboard.reload()
    await expect(dashboard.locator("td.subject")).to_have_text("Spring offer")
    await dashboard.click("td.subject a")
    await expect(dashboard.locator("h1.subject")).to_have_text("Spring offer")
    await expect(dashboard.locator("table.links")).to_contain_text(target)
    timeline = dashboard.locator("table.timeline").first
    await expect(timeline.locator("tr.kind-open")).to_have_count(1)
    await expect(timeline.locator("tr.kind-click")).to_have_count(1)
    await expect(dashboard.locator("svg rect.bar-open")).not_to_have_count(0)
    await dashboard.screenshot(path=str(output_dir / "message.png"), full_page=True)
    await admin.close()


async def test_markup_in_a_subject_is_shown_as_text(relay: RelayProcess, browser: Browser) -> None:
    await asyncio.to_thread(send, relay, EVIL_SUBJECT, "<p>hello</p>")
    await delivered_html(relay.workdir / "outbox")
    page = await browser.new_page()
    dialogs: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    await log_in(page, relay)
    cell = page.locator("td.subject a")
    await expect(cell).to_have_text(EVIL_SUBJECT)
    assert await page.locator("td.subject script, td.subject img, td.subject b").count() == 0
    await cell.click()
    await expect(page.locator("h1.subject")).to_have_text(EVIL_SUBJECT)
    assert await page.title() == f"{EVIL_SUBJECT} · relay admin"
    assert await page.locator("h1.subject *").count() == 0
    await page.wait_for_timeout(300)  # give an injected onerror handler its chance to fire
    assert dialogs == []


async def test_the_dashboard_refuses_without_the_token(
    relay: RelayProcess, browser: Browser
) -> None:
    page = await browser.new_page()
    for path in ("/", "/charts", "/feed"):
        await page.goto(relay.admin_url + path)
        assert page.url.startswith(relay.admin_url + "/login")
        await expect(page.locator("input[name=token]")).to_be_visible()
    api = await page.request.get(relay.admin_url + "/api/messages")
    assert api.status == 401
    stream = await page.request.get(relay.admin_url + "/api/events/stream")
    assert stream.status == 401
    await log_in(page, relay, token="wrong-token")
    await expect(page.locator("p.error")).to_have_text("That token is not right.")
    assert await page.context.cookies() == []
    await page.fill("input[name=token]", TOKEN)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Messages")
    cookie = (await page.context.cookies())[0]
    assert cookie["name"] == "relay_admin" and TOKEN not in cookie["value"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
