"""The OpenAPI documents describe exactly the routes each listener serves.

What the answers look like is Schemathesis's to check against a running relay
(tests/integration/test_api_contract.py); here: every route is documented and
every documented one is served, on both listeners, and the operations the
document calls public are exactly the ones the token check lets through.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.store import Store
from relay.core.tokens import TokenCodec
from tracking_http.admin import params
from tracking_http.admin.auth import is_public
from tracking_http.admin.openapi import openapi_document, tracking_document
from tracking_http.app import create_admin_app, create_tracking_app

TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE_URL = "https://t.example.com"


def served_operations(app: web.Application, implicit: tuple[str, ...]) -> set[tuple[str, str]]:
    """(method, OpenAPI path) for every route; a static directory is /prefix/{filename}."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None:
            path = str(info["prefix"]).rstrip("/") + "/{filename}"
        for route in resource:
            if route.method not in (*implicit, "*"):
                found.add((route.method.lower(), str(path)))
    return found


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, path) for path, item in document["paths"].items() for method in item}


def check_operations(document: dict[str, Any]) -> None:
    """Each operation: an id, a summary, its path parameters, and declared answers."""
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    for path, item in document["paths"].items():
        for operation in item.values():
            names = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert names == {s.strip("{}") for s in re.findall(r"\{[^}]+\}", path)}, path
            assert all(p["schema"] for p in operation["parameters"]), path
            assert operation["responses"] and operation["summary"], path
            assert any(status < "400" for status in operation["responses"]), path


def admin_config() -> Config:
    return Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))


async def test_every_route_is_documented_and_every_documented_route_is_served(
    store: Store, serve: Any
) -> None:
    app = create_admin_app(admin_config(), store)
    served = served_operations(app, implicit=("HEAD",))
    client = await serve(app)
    resp = await client.get("/api/openapi.json", headers=AUTH)
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"].startswith("3.1")
    documented = documented_operations(document)
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not serve"
    check_operations(document)


async def test_public_operations_are_the_ones_the_token_check_lets_through() -> None:
    """security: [] on an operation exactly when the middleware needs no credentials."""
    document = openapi_document()
    assert document["security"] == [{"bearer": []}, {"cookie": []}]
    for path, item in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method, operation in item.items():
            public = operation.get("security") == []
            assert public == is_public(concrete), (method, path)
            if not public and (path.startswith("/api/") or path == "/metrics"):
                assert "401" in operation["responses"], (method, path)
            elif not public:
                assert "303" in operation["responses"], (method, path)  # to the login form


async def test_the_tracking_document_describes_the_tracking_listener(
    store: Store, codec: TokenCodec, serve: Any
) -> None:
    config = admin_config()
    tracking = create_tracking_app(config, store, codec)
    served = served_operations(tracking, implicit=())
    document = tracking_document(BASE_URL)
    assert document["servers"] == [{"url": BASE_URL}]
    documented = documented_operations(document)
    assert served - documented == set(), "routes missing from the tracking document"
    assert documented - served == set(), "documented routes the tracking app does not serve"
    check_operations(document)
    client = await serve(create_admin_app(config, store))
    resp = await client.get("/api/tracking-openapi.json", headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["paths"] == document["paths"]


def test_parameter_patterns_are_the_ones_the_handlers_check() -> None:
    """The document's patterns, read as JavaScript would, agree with the handlers."""
    for value, ok in [
        ("bob@example.net", True),
        ("Ünï@bücher.example", True),
        ("\x1c@0", False),  # Python's \s would call it a space; JavaScript's does not
        ("a b@c", False),
        ("a@b@c", False),
        ("a@b\n", False),
        ("@b", False),
        ("a@" + "b" * params.MAX_ADDRESS, False),
    ]:
        assert params.is_address(value) is ok, value
    for value, ok in [("01a23b30346d9e276a02", True), ("01A2", False), ("", False), ("a\n", False)]:
        assert params.is_message_id(value) is ok, value
    assert params.is_digits("42") and not params.is_digits("²") and not params.is_digits("")


async def test_unicode_digits_are_a_bad_parameter_not_a_server_error(
    store: Store, serve: Any
) -> None:
    """ "²".isdigit() is true and int("²") raises: each such parameter gets a 400."""
    client = await serve(create_admin_app(admin_config(), store))
    for url in (
        "/api/messages?limit=%C2%B2",
        "/api/events?since=%C2%B2",
        "/api/events?limit=%C2%B2",
        "/api/export.csv?since=%C2%B2",
        "/api/events/stream?last_event_id=%C2%B2",
        "/charts?days=%C2%B2",
    ):
        resp = await client.get(url, headers=AUTH)
        assert resp.status == 400, url


async def test_a_form_that_cannot_be_read_is_a_400(store: Store, serve: Any) -> None:
    """multipart without its boundary, or an unknown charset: 400 with a JSON error."""
    client = await serve(create_admin_app(admin_config(), store))
    for path in ("/login", "/logout"):
        for content_type in (
            "multipart/form-data",
            "application/x-www-form-urlencoded; charset=no-such-charset",
        ):
            resp = await client.post(
                path, data=b"token=x", headers={**AUTH, "Content-Type": content_type}
            )
            assert resp.status == 400, (path, content_type)
            assert "error" in await resp.json()
