"""GET /api/openapi.json: an OpenAPI 3.1 document of every route on the admin listener.

ROUTES lists each operation; tests/tracking_http/test_openapi.py walks the
app's router and fails when a route is missing here or a listed one is not
served, so a new route must be described in the same change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tracking_http.admin import session
from tracking_http.admin.api import json_response

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description); path ones required
    body: str = "application/json"  # the content type of the 200 answer
    schema: str | None = None  # a components/schemas name for the 200 answer


def _q(name: str, text: str) -> tuple[str, str, str]:
    return (name, "query", text)


def _p(name: str, text: str) -> tuple[str, str, str]:
    return (name, "path", text)


EVENT_FILTERS = (
    _q("since", "event id cursor: only events with a larger id"),
    _q("type", "open, click or reply"),
    _q("recipient", "exact recipient address"),
)
ROUTES: tuple[Operation, ...] = (
    Operation("get", "/", "Dashboard: the messages list", "dashboard", body="text/html"),
    Operation("get", "/login", "The login form", "dashboard", body="text/html"),
    Operation(
        "post", "/login", "Log in with the token (sets a cookie)", "dashboard", body="text/html"
    ),
    Operation("post", "/logout", "Log out (clears the cookie)", "dashboard", body="text/html"),
    Operation(
        "get", "/messages/{id}", "Dashboard: one message", "dashboard", (_p("id", ""),), "text/html"
    ),
    Operation(
        "get",
        "/contacts/{address}",
        "Dashboard: one contact",
        "dashboard",
        (_p("address", "recipient address"),),
        body="text/html",
    ),
    Operation(
        "get", "/charts", "Dashboard: opens and clicks over time", "dashboard", body="text/html"
    ),
    Operation("get", "/feed", "Dashboard: the live feed", "dashboard", body="text/html"),
    Operation(
        "get",
        "/static/{filename}",
        "The dashboard's CSS and JavaScript",
        "dashboard",
        (_p("filename", ""),),
        body="text/plain",
    ),
    Operation(
        "get",
        "/api/messages",
        "Messages, newest first",
        "api",
        (_q("limit", "1 to 500"), _q("cursor", "the previous page's next")),
    ),
    Operation("get", "/api/messages/{id}", "One message, per recipient", "api", (_p("id", ""),)),
    Operation(
        "get",
        "/api/messages/{id}/raw",
        "The logged copy of a message",
        "api",
        (_p("id", ""),),
        body="message/rfc822",
    ),
    Operation(
        "get",
        "/api/events",
        "Events by id, with filters",
        "api",
        (*EVENT_FILTERS, _q("limit", "1 to 1000, default 100")),
        schema="EventPage",
    ),
    Operation(
        "get",
        "/api/events/stream",
        "Server-Sent Events of new events; resumes with Last-Event-ID",
        "api",
        (
            *EVENT_FILTERS[1:],
            ("Last-Event-ID", "header", "resume after this id"),
            _q("last_event_id", "the same, for clients that cannot set headers"),
        ),
        body="text/event-stream",
    ),
    Operation(
        "get",
        "/api/export.csv",
        "Every event as CSV, streamed",
        "api",
        EVENT_FILTERS,
        body="text/csv",
    ),
    Operation(
        "get",
        "/api/contacts/{address}",
        "One recipient across messages (the CRM contact record)",
        "api",
        (_p("address", "recipient address"),),
        schema="Contact",
    ),
    Operation(
        "delete",
        "/api/contacts/{address}",
        "Erase what the store holds about an address",
        "api",
        (_p("address", "recipient address"),),
    ),
    Operation("get", "/api/openapi.json", "This document", "api"),
    Operation("get", "/metrics", "Prometheus metrics", "ops", body="text/plain"),
    Operation(
        "get",
        "/healthz",
        "ok while this process serves and its store answers (503 if not)",
        "ops",
        body="text/plain",
    ),
    Operation(
        "get",
        "/readyz",
        "ready for traffic: healthy and not draining (503 if not)",
        "ops",
        body="text/plain",
    ),
)

EVENT_SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "type": {"enum": ["open", "click", "reply"]},
        "at": {"type": "string", "format": "date-time"},
        "message_id": {"type": "string"},
        "recipient": {"type": ["string", "null"], "description": "null: someone"},
        "url": {"type": ["string", "null"]},
        "class": {"enum": ["human", "bot", "proxy", "prefetch", "self"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "inferred": {"type": "boolean"},
        "is_machine": {"type": "boolean"},
        "ip": {"type": "string"},
        "user_agent": {"type": "string"},
    },
}
SCHEMAS: JsonObject = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
    "Event": EVENT_SCHEMA,
    "EventPage": {
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
            "next": {"type": ["integer", "null"], "description": "pass as since"},
        },
    },
    "Contact": {
        "type": "object",
        "properties": {
            "address": {"type": "string"},
            "last_open": {"type": ["string", "null"], "format": "date-time"},
            "last_click": {"type": ["string", "null"], "format": "date-time"},
            "last_reply": {"type": ["string", "null"], "format": "date-time"},
            "counts": {"type": "object", "description": "type -> class -> count"},
            "messages": {"type": "array", "items": {"type": "object"}},
            "timeline": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
        },
    },
}


def _operation(op: Operation) -> JsonObject:
    content: JsonObject = {op.body: {}}
    if op.schema is not None:
        content[op.body] = {"schema": {"$ref": f"#/components/schemas/{op.schema}"}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [
            {"name": name, "in": where, "required": where == "path", "description": text}
            | {"schema": {"type": "string"}}
            for name, where, text in op.params
        ],
        "responses": {
            "200": {"description": "OK", "content": content},
            "400": {"description": "A bad parameter", "content": error},
            "401": {"description": "No or wrong admin token"},
        },
    }


def openapi_document() -> JsonObject:
    paths: JsonObject = {}
    for op in ROUTES:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "relay admin", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": session.COOKIE},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document())
