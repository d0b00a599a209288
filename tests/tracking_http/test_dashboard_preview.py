"""The preview of a logged copy: a sandboxed frame whose answer may load nothing remote."""

from __future__ import annotations

import re
from typing import Any

from support import messages

from relay.core.models import TrackingDecision
from relay.core.store import Store
from tracking_http.admin.preview import BASE_TARGET, PREVIEW_CSP, build, safe_html
from tracking_http.app import create_admin_app

from .test_dashboard import TOKEN, admin_config, logged_in

PIXEL = "http://tracker.example/o/abc.gif"
HTML = (
    '<!DOCTYPE html><html><head><meta http-equiv="refresh" content="0;url=http://evil.example/">'
    f'<link rel="stylesheet" href="http://evil.example/s.css"></head><body><p>Hi <b>Bob</b></p>'
    f'<img src="{PIXEL}" alt=""><script>alert(1)</script>'
    '<form action="http://evil.example/f"><input name="q"></form></body></html>'
)


def mail(subject: str = "Spring offer") -> bytes:
    return messages.html_mail(HTML, subject, text="Plain text part, caf\u00e9.").as_bytes()


async def spool(store: Store, log_copy: bool, subject: str = "Spring offer") -> str:
    decision = TrackingDecision(opens=True, clicks=True, log_copy=log_copy)
    spooled = await messages.spool(
        store, ("bob@example.net",), raw=mail(subject), subject=subject, decision=decision
    )
    return spooled.message_id


def test_the_preview_html_is_defused() -> None:
    preview = build(mail())
    assert preview.html is not None
    assert preview.html.startswith("<!DOCTYPE html>" + BASE_TARGET)
    assert "http-equiv" not in preview.html.replace("data-defused-http-equiv", "")
    assert preview.text == "Plain text part, caf\u00e9.\n"
    assert ("Subject", "Spring offer") in preview.headers
    assert "Content-Type: multipart/alternative" in preview.source
    assert safe_html("<p>x</p>") == BASE_TARGET + "<p>x</p>"


async def test_a_logged_copy_is_shown_in_a_sandbox_that_loads_nothing(
    store: Store, serve: Any
) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    message_id = await spool(store, log_copy=True)
    assert (
        await client.get(f"/messages/{message_id}/preview", allow_redirects=False)
    ).status == 303
    await logged_in(client)
    page = await client.get(f"/messages/{message_id}")
    text = await page.text()
    frame = re.search(r"<iframe [^>]*>", text)
    assert frame is not None
    assert re.search(r"\ssandbox[\s>]", frame.group(0))  # no allow-* value at all
    assert f'src="/messages/{message_id}/preview"' in frame.group(0)
    assert "Plain text part, caf\u00e9." in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the source, as text
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]

    preview = await client.get(f"/messages/{message_id}/preview")
    assert preview.status == 200
    assert preview.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = preview.headers["Content-Security-Policy"]
    assert csp == PREVIEW_CSP
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["default-src"] == ["'none'"]
    assert directives["img-src"] == ["data:"]
    assert directives["style-src"] == ["'unsafe-inline'"]
    assert directives["form-action"] == ["'none'"]
    assert directives["sandbox"] == []  # opened on its own, it is sandboxed too
    assert not any(k.startswith("script") or k.startswith("connect") for k in directives)
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"
    body = await preview.text()
    assert "<p>Hi <b>Bob</b></p>" in body and PIXEL in body  # shown as is: the CSP stops it


async def test_other_messages_show_their_headers_and_no_preview(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    message_id = await spool(store, log_copy=False, subject="Not kept")
    await logged_in(client)
    text = await (await client.get(f"/messages/{message_id}")).text()
    assert "<iframe" not in text
    assert "Not kept" in text and "bob@example.net" in text
    assert "&lt;m@example.com&gt;" in text
    assert (await client.get(f"/messages/{message_id}/preview")).status == 404
    assert (await client.get("/messages/zz-not-an-id/preview")).status == 404
    assert TOKEN not in text
