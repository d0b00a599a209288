"""The OpenAPI document describes exactly the routes the admin app serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relay.core.config import AdminConfig, Config, HostPort
from relay.core.store import Store
from tracking_http.app import create_admin_app

TOKEN = "openapi-token"


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, OpenAPI path) for every route; a static directory is /prefix/{filename}."""
    found: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path is None:
            path = str(info["prefix"]).rstrip("/") + "/{filename}"
        for route in resource:
            if route.method not in ("HEAD", "*"):
                found.add((route.method.lower(), str(path)))
    return found


async def test_every_route_is_documented_and_every_documented_route_is_served(
    store: Store, serve: Any
) -> None:
    config = Config(admin=AdminConfig(listen=(HostPort("127.0.0.1", 8081),), token=TOKEN))
    app = create_admin_app(config, store)
    served = served_operations(app)
    client = await serve(app)
    resp = await client.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"].startswith("3.1")
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not serve"
    for path, item in document["paths"].items():
        for operation in item.values():
            params = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert params == {s.strip("{}") for s in path.split("/") if s.startswith("{")}
            assert "200" in operation["responses"] and operation["summary"]
