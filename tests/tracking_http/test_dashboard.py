"""The dashboard over a real socket: login cookie, pages, escaping, filters, paging."""

from __future__ import annotations

import re
import time
from typing import Any

from support import messages
from support.messages import BOB, CAROL

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.models import Event
from relay.core.store import Store
from tracking_http.admin import session
from tracking_http.app import create_admin_app

TOKEN = "dash-token-0123456789"
EVIL = '<script>alert("x")</script><b>bold</b> & "quotes"'


def admin_config(token: str = TOKEN) -> Config:
    return Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=token))


async def spool(
    store: Store,
    subject: str,
    sender: str = "alice@example.com",
    rcpts: tuple[str, ...] = (BOB, CAROL),
    at: float | None = None,
    **fields: Any,
) -> str:
    """A message from `sender`, received `at` (now by default); its id."""
    spooled = await messages.spool(
        store, rcpts, mail_from=sender, subject=subject, received_at=at, **fields
    )
    return spooled.message_id


async def copy_ids(store: Store, message_id: str) -> dict[str, int]:
    due = await store.due_copies(time.time() + 86400 * 365 * 10, 10_000)
    return {c.recipient or "": c.id for c in due if c.message_id == message_id}


async def logged_in(client: Any) -> None:
    resp = await client.post("/login", data={"token": TOKEN, "next": "/"}, allow_redirects=False)
    assert resp.status == 303


async def test_pages_redirect_to_login_and_api_says_401(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    for path in ("/", "/charts", "/feed", "/messages/abc", "/contacts/bob@example.net"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"].startswith("/login")
    resp = await client.get("/charts?days=7", allow_redirects=False)
    assert resp.headers["Location"] == "/login?next=/charts?days%3D7"
    assert (await client.get("/api/messages")).status == 401
    login = await client.get("/login")
    assert login.status == 200
    assert 'name="token"' in await login.text()
    assert (await client.get("/static/dashboard.css")).status == 200


async def test_login_sets_a_safe_cookie_that_is_not_the_token(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    wrong = await client.post("/login", data={"token": "nope"}, allow_redirects=False)
    assert wrong.status == 401
    assert session.COOKIE not in wrong.cookies
    resp = await client.post(
        "/login", data={"token": TOKEN, "next": "/charts"}, allow_redirects=False
    )
    assert (resp.status, resp.headers["Location"]) == (303, "/charts")
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{session.COOKIE}=")
    assert TOKEN not in header
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in header
    assert "Secure" not in header  # plain HTTP on loopback; Secure follows HTTPS
    # The cookie now opens pages and the API alike.
    assert (await client.get("/", allow_redirects=False)).status == 200
    assert (await client.get("/api/messages")).status == 200


async def test_forged_or_expired_cookie_is_refused(store: Store, serve: Any) -> None:
    expired = session.issue(TOKEN, now=time.time() - session.SESSION_SECONDS - 10)
    other = session.issue("another-token")
    expires, _, mac = session.issue(TOKEN).partition(".")
    stretched = f"{int(expires) + 10**6}.{mac}"
    for value in (expired, other, stretched, TOKEN, "", "1." + "0" * 64):
        fresh = await serve(create_admin_app(admin_config(), store))
        fresh.session.cookie_jar.update_cookies({session.COOKIE: value})
        assert (await fresh.get("/api/messages")).status == 401, value
        assert (await fresh.get("/", allow_redirects=False)).status == 303, value


async def test_login_next_is_never_an_open_redirect(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "evil"):
        resp = await client.post(
            "/login", data={"token": TOKEN, "next": target}, allow_redirects=False
        )
        assert resp.headers["Location"] == "/", target


async def test_logout_needs_the_form_value(store: Store, serve: Any) -> None:
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    page = await client.get("/")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', await page.text())
    assert csrf is not None
    refused = await client.post("/logout", data={"csrf": "0" * 64}, allow_redirects=False)
    assert refused.status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200
    done = await client.post("/logout", data={"csrf": csrf.group(1)}, allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (303, "/login")
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_subject_with_markup_is_escaped_everywhere(store: Store, serve: Any) -> None:
    message_id = await spool(store, EVIL, sender='"><img src=x>@example.com')
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    for path in ("/", f"/messages/{message_id}"):
        resp = await client.get(path)
        text = await resp.text()
        assert resp.status == 200
        assert "<script>alert" not in text and "<b>bold</b>" not in text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in text
        assert '"><img' not in text
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


async def test_bearer_header_opens_pages_too(store: Store, serve: Any) -> None:
    await spool(store, "Quarterly report")
    client = await serve(create_admin_app(admin_config(), store))
    resp = await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    assert "Quarterly report" in await resp.text()


async def test_list_filters_by_sender_and_date_and_pages(store: Store, serve: Any) -> None:
    day = 86400.0
    base = time.time() - 10 * day
    for i in range(3):
        await spool(store, f"old {i}", at=base + i)
    for i in range(60):
        await spool(store, f"new {i}", sender="bulk@example.com", at=base + 5 * day + i)
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    text = await (await client.get("/?sender=alice@example.com")).text()
    assert text.count("old ") == 3 and "new " not in text
    old_day = time.strftime("%Y-%m-%d", time.gmtime(base))
    text = await (await client.get(f"/?from={old_day}&to={old_day}")).text()
    assert "old 0" in text and "new " not in text
    first = await (await client.get("/?sender=bulk@example.com")).text()
    assert first.count("<tr>") == 1 + 50  # the header row and one page
    next_url = re.search(r'rel="next" href="([^"]+)"', first)
    assert next_url is not None
    second = await (await client.get(next_url.group(1).replace("&amp;", "&"))).text()
    assert second.count("<tr>") == 1 + 10 and "new 0<" in second
    assert 'rel="next"' not in second
    bad = await client.get("/?from=yesterday")
    assert bad.status == 400 and "from: use a date" in await bad.text()
    assert (await client.get("/?cursor=!!")).status == 400


async def test_message_and_contact_pages(store: Store, serve: Any) -> None:
    message_id = await spool(store, "Launch")
    ids = await copy_ids(store, message_id)
    await store.record_links(ids[BOB], ["https://shop.example.com/p?id=1&x=2"])
    now = time.time()
    events = [
        Event("open", ids[BOB], message_id, BOB, now, "198.51.100.7", "Thunderbird/128"),
        Event("open", ids[BOB], message_id, BOB, now + 1, "17.1.2.3", "Apple", klass="proxy"),
        Event(
            "click", ids[BOB], message_id, BOB, now + 2, "198.51.100.7", "Firefox",
            url="https://shop.example.com/p?id=1&x=2", link_index=0,
        ),
    ]  # fmt: skip
    for event in events:
        await store.record_event(event)
    client = await serve(create_admin_app(admin_config(), store))
    await logged_in(client)
    page = await (await client.get(f"/messages/{message_id}")).text()
    assert "Launch" in page and BOB in page and CAROL in page
    assert "https://shop.example.com/p?id=1&amp;x=2" in page
    assert page.count('class="kind-open class-proxy"') == 1
    assert 'class="bar-open"' in page and 'class="bar-click"' in page
    assert "Someone" not in page  # no shared copy, no event of one: no empty card
    assert 'title="Thunderbird/128"' in page  # the whole user agent, however long
    contact = await client.get(f"/contacts/{BOB}")
    text = await contact.text()
    assert contact.status == 200
    assert "Launch" in text and text.count("<tr class=") == 3
    assert (await client.get("/contacts/nobody@example.com")).status == 404
    assert (await client.get("/messages/ffff")).status == 404
    charts = await client.get("/charts?days=1")
    assert charts.status == 200 and "human opens: <strong>1</strong>" in await charts.text()
    assert (await client.get("/charts?days=1000")).status == 400
