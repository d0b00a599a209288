"""OpenAPI 3.1 documents of both HTTP listeners, served on the admin listener.

``GET /api/openapi.json`` describes every route of the admin listener;
``GET /api/tracking-openapi.json`` describes the public tracking listener
(its ``servers`` entry is ``tracking.base_url``), so the tracking listener
itself serves nothing but pixels, clicks and health checks.

Each operation lists every status it can answer with the body's media type
and schema, the formats of its parameters (the patterns of
tracking_http.admin.params, which the handlers check), and whether it needs
the admin token (``security: []`` marks the public ones). Schemathesis runs
against both documents in tests/integration/test_api_contract.py: a route whose
answers the document does not describe fails ``make test``.

ADMIN_ROUTES and TRACKING_ROUTES list the operations;
tests/tracking_http/test_openapi.py walks each app's router and fails when a
route is missing here or a listed one is not served, so a new route must be
described in the same change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.core.tokens import MAX_TOKEN_CHARS
from tracking_http.admin import params, session
from tracking_http.admin.api import MAX_LIMIT, json_response
from tracking_http.admin.assets import STATIC_TYPES, static_files
from tracking_http.admin.dashboard import MAX_CHART_DAYS
from tracking_http.admin.events_api import EVENT_TYPES, MAX_EVENTS

JsonObject = dict[str, Any]
EVENT_CLASSES = ("human", "bot", "proxy", "prefetch", "self")


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path, query or header; path ones are required
    description: str
    schema: JsonObject


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[str, JsonObject]
    params: tuple[Param, ...] = ()
    public: bool = False  # no token needed
    body: JsonObject | None = None  # the requestBody
    links: Mapping[str, Mapping[str, JsonObject]] = field(default_factory=dict)  # status -> links


# --- building blocks ---------------------------------------------------------------


def ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **more: Any) -> JsonObject:
    return {"type": [kind, "null"], **more}


def query(name: str, text: str, schema: JsonObject) -> Param:
    return Param(name, "query", text, schema)


def path(name: str, text: str, schema: JsonObject) -> Param:
    return Param(name, "path", text, schema)


def answer(text: str, media: str | None = None, schema: JsonObject | None = None) -> JsonObject:
    out: JsonObject = {"description": text}
    if media is not None:
        out["content"] = {media: {} if schema is None else {"schema": schema}}
    return out


def error(text: str) -> JsonObject:
    """An answer whose body is ``{"error": "..."}``."""
    return answer(text, "application/json", ref("Error"))


def html(text: str) -> JsonObject:
    return answer(text, "text/html", {"type": "string"})


def plain(text: str) -> JsonObject:
    return answer(text, "text/plain", {"type": "string"})


def redirect(text: str) -> JsonObject:
    location = {"required": True, "schema": {"type": "string"}, "description": "where to go"}
    return {"description": text, "headers": {"Location": location}}


JSON_400 = {"400": error("A bad parameter: the error says which")}
API_401 = {
    "401": {
        **error("No or wrong admin token"),
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    }
}
PAGE_303 = {"303": redirect("No credentials: to the login form (with next=this page)")}
FORM_400 = {"400": error("The body is not a form")}
TOO_LARGE = {"413": plain("The body is over 64 KiB")}

MESSAGE_ID = {
    "type": "string",
    "pattern": params.MESSAGE_ID,
    "maxLength": params.MAX_MESSAGE_ID,
    "description": "hex digits: 12 of milliseconds then 8 random, as the relay makes them",
}
ADDRESS = {"type": "string", "pattern": params.ADDRESS, "maxLength": params.MAX_ADDRESS}
EVENT_ID = {"type": "integer", "minimum": 0, "maximum": params.MAX_EVENT_ID}
DAY = {"anyOf": [{"type": "string", "format": "date"}, {"const": ""}]}
EVENT_FILTERS = (
    query("since", "event id cursor: only events with a larger id", EVENT_ID),
    query("type", "only events of this type", {"enum": list(EVENT_TYPES)}),
    query(
        "recipient",
        "exact recipient address; empty: every recipient",
        {"type": "string", "maxLength": params.MAX_ADDRESS},
    ),
)


def page_size(default: int, most: int) -> Param:
    return query(
        "limit",
        f"page size (default {default})",
        {"type": "integer", "minimum": 1, "maximum": most},
    )


ID_PARAM = path("id", "a message id", MESSAGE_ID)
# Search and tags (tracking_http.admin.search, tracking_http.admin.tags_api).
TIME_PARAM = {
    "type": "string",
    "pattern": params.TIME,
    "description": "unix seconds, or an ISO 8601 date or date and time (UTC unless offset)",
}
TAG_TEXT = {"type": "string", "minLength": 1, "maxLength": params.MAX_TAG}
TAG_PARAM = path("tag", "a tag (compared case-insensitively)", TAG_TEXT)
TIME_RANGE = (
    query("since", "messages received at or after this", TIME_PARAM),
    query("until", "messages received before this", TIME_PARAM),
)
SEARCH = (
    query(
        "q",
        "words of the subject (each must appear) and addresses (sender or recipient)",
        {"type": "string", "maxLength": 200},
    ),
    query("recipient", "a recipient of a copy of its own", ADDRESS),
    query("tag", "messages with this tag", TAG_TEXT),
    query("state", "messages with a copy in this delivery state", {"enum": list(params.STATES)}),
    *TIME_RANGE,
)
# The queue and webhooks pages' buttons (tracking_http.admin.queue_views).
PAGE_NOTE = (
    query("done", "what a button just did", {"enum": ["retried", "deleted", "hooks"]}),
    query("n", "how many it did that to", {"type": "integer", "minimum": 0, "maximum": 999999}),
)
FORM_ANSWERS = {
    "400": error("The body is not a form, or an id is not one (1 to 500 of them)"),
    "403": plain("Missing or stale csrf value (or no bearer header): reload the page"),
    **TOO_LARGE,
}


def form(properties: JsonObject, required: str) -> JsonObject:
    """A request body sent as an HTML form would send it."""
    schema = {"type": "object", "properties": properties, "required": [required]}
    media = "application/x-www-form-urlencoded"
    return {"required": True, "content": {media: {"schema": schema}}}


def ids_form(name: str, text: str, confirm: bool = False) -> JsonObject:
    """A button's form: one or more ids (the field repeated), maybe confirm=yes. Browsers
    also send the page's csrf field; a script sends the bearer header instead."""
    one = {
        "anyOf": [
            {"type": "string", "pattern": "^[0-9]{1,18}$"},
            {"type": "integer", "minimum": 0, "maximum": params.MAX_EVENT_ID},
        ]
    }
    many = {"type": "array", "items": one, "minItems": 1, "maxItems": 500}
    properties: JsonObject = {name: {"anyOf": [one, many], "description": text}}
    if confirm:
        properties["confirm"] = {"type": "string", "enum": ["yes"]}
    return form(properties, name)


ADDRESS_PARAM = path("address", "a recipient address", ADDRESS)
DAYS = (query("from", "first day (UTC)", DAY), query("to", "last day (UTC)", DAY))
NOTE_400 = {"400": html("done or n is not one a button sends")}
HEALTHZ = {"200": plain("ok"), "503": plain("What is wrong")}
READYZ = {"200": plain("ready"), "503": plain("draining, or what is wrong")}
HEALTHZ_TEXT = "ok while this process serves and its store answers"
READYZ_TEXT = "ready for traffic: healthy and not draining"


def link(operation_id: str, **parameters: str) -> JsonObject:
    return {"operationId": operation_id, "parameters": parameters}


MESSAGE_LINKS = {
    "GetMessage": link("getMessage", id="$request.path.id"),
    "GetRawMessage": link("getRawMessage", id="$request.path.id"),
    "MessagePage": link("messagePage", id="$request.path.id"),
    "GetRecipient": link("getContact", address="$response.body#/recipients/0/address"),
}


def page(
    route: str, name: str, text: str, answers: JsonObject | None = None, *more: Param
) -> Operation:
    """A dashboard page (GET, HTML); without credentials, a redirect to the login form."""
    responses = {"200": html("The page"), **(answers or {}), **PAGE_303}
    return Operation("get", route, name, f"Dashboard: {text}", "dashboard", responses, more)


def button(route: str, name: str, text: str, answers: JsonObject, body: JsonObject) -> Operation:
    """A dashboard button's POST, answered by a redirect back to its page."""
    answers = {**FORM_ANSWERS, **answers}
    return Operation("post", route, name, f"Dashboard: {text}", "dashboard", answers, body=body)


RETRIED = {"copy": ("a copy id", "queue"), "delivery": ("an outbox row id", "webhooks")}


def retry(route: str, name: str, text: str, field: str) -> Operation:
    """A retry button: the ids in ``field``, then back to their page."""
    what, back = RETRIED[field]
    done = {"303": redirect(f"Done: back to the {back} page, saying how many")}
    return button(route, name, text, done, ids_form(field, what))


def api(
    route: str,
    name: str,
    text: str,
    answers: JsonObject,
    *more: Param,
    method: str = "get",
    links: Mapping[str, Mapping[str, JsonObject]] | None = None,
) -> Operation:
    """An API call: it answers 401 without the token."""
    answers = {**answers, **API_401}
    return Operation(method, route, name, text, "api", answers, more, links=links or {})


READERS = "Readers by client and platform"
OPENAPI = answer("OpenAPI 3.1", "application/json", {"type": "object"})


def json_answer(text: str, schema: str) -> JsonObject:
    """An answer whose body is the named schema of components."""
    return answer(text, "application/json", ref(schema))


# --- the admin listener ----------------------------------------------------------------

ADMIN_ROUTES: tuple[Operation, ...] = (
    page(
        "/",
        "messagesPage",
        "the messages list",
        {"400": html("A filter it cannot use (the page says which)")},
        query("q", "words of the subject, or an address", {"type": "string", "maxLength": 200}),
        query("recipient", "a recipient's address", {"anyOf": [ADDRESS, {"const": ""}]}),
        query("sender", "sender address (part of it)", {"type": "string", "maxLength": 320}),
        query("tag", "a tag", {"type": "string", "maxLength": params.MAX_TAG}),
        query("state", "a copy's delivery state", {"enum": ["", *params.STATES]}),
        *DAYS,
        query("cursor", "the page after this message (the page's next link)", MESSAGE_ID),
    ),
    page("/tags", "tagsPage", "every tag"),
    page(
        "/tags/{tag}",
        "tagPage",
        "one tag's campaign report, its links and mail clients",
        {
            "400": html("A day it cannot use"),
            "404": html("No message with this tag (in those days)"),
        },
        TAG_PARAM,
        *DAYS,
    ),
    Operation(
        "get",
        "/login",
        "loginForm",
        "The login form",
        "dashboard",
        {
            "200": html("The form"),
            "303": redirect("No token is configured (loopback only): straight to next"),
        },
        (query("next", "where to go after logging in (a local path)", {"type": "string"}),),
        public=True,
    ),
    Operation(
        "post",
        "/login",
        "login",
        "Log in with the token (sets a cookie)",
        "dashboard",
        {
            "303": redirect("Logged in: to next; the relay_admin cookie is set"),
            "401": html("Wrong token: the form again, after a pause"),
            **FORM_400,
            **TOO_LARGE,
        },
        public=True,
        body=form(
            {
                "token": {"type": "string", "description": "admin.token"},
                "next": {"type": "string", "description": "a local path"},
            },
            "token",
        ),
    ),
    Operation(
        "post",
        "/logout",
        "logout",
        "Log out (clears the cookie)",
        "dashboard",
        {
            "303": redirect("Logged out (or not logged in): to the login form"),
            "403": plain("Missing or stale csrf value: reload the page"),
            **FORM_400,
            **TOO_LARGE,
        },
        body=form({"csrf": {"type": "string", "description": "the logout form's value"}}, "csrf"),
    ),
    page(
        "/messages/{id}", "messagePage", "one message", {"404": html("No such message")}, ID_PARAM
    ),
    page(
        "/contacts/{address}",
        "contactPage",
        "one contact",
        {"404": html("Nothing was sent to that address")},
        ADDRESS_PARAM,
    ),
    page(
        "/charts",
        "chartsPage",
        "opens and clicks over time",
        {"400": html("days out of range")},
        query(
            "days",
            "how far back (default 14)",
            {"type": "integer", "minimum": 1, "maximum": MAX_CHART_DAYS},
        ),
    ),
    page("/feed", "feedPage", "the live feed"),
    page(
        "/messages/{id}/preview",
        "messagePreview",
        "a logged copy's HTML, for the message page's sandboxed frame",
        {
            "200": html("The HTML part, under a CSP that allows no remote load, script or form"),
            "404": html("Not a logged copy, or no HTML part"),
        },
        ID_PARAM,
    ),
    page("/queue", "queuePage", "queued, deferred and bounced copies", NOTE_400, *PAGE_NOTE),
    retry("/queue/retry", "queueRetry", "make queued or deferred copies due now", "copy"),
    button(
        "/queue/delete",
        "queueDelete",
        "drop queued or deferred copies (no bounce)",
        {
            "200": html("Without confirm=yes: a page asking to confirm"),
            "303": redirect("Deleted: back to the queue page, saying how many"),
        },
        ids_form("copy", "a copy id", confirm=True),
    ),
    page("/webhooks", "webhooksPage", "webhook deliveries pending or failed", NOTE_400, *PAGE_NOTE),
    retry(
        "/webhooks/retry",
        "webhooksRetry",
        "send webhook deliveries again now (failed ones too)",
        "delivery",
    ),
    Operation(
        "get",
        "/static/{filename}",
        "staticFile",
        "The dashboard's CSS and JavaScript",
        "dashboard",
        {
            "200": {
                "description": "The file",
                "content": {media: {} for media in sorted(set(STATIC_TYPES.values()))},
            },
            "304": answer("Not changed (If-None-Match had its ETag)"),
            "404": plain("No such file"),
        },
        (path("filename", "one of the dashboard's files", {"enum": sorted(static_files())}),),
        public=True,
    ),
    api(
        "/api/messages",
        "listMessages",
        "Messages, newest first; the search parameters narrow them (all must hold)",
        {"200": json_answer("A page", "MessagePage"), **JSON_400},
        page_size(50, MAX_LIMIT),
        query("cursor", "the previous page's next (a message id)", MESSAGE_ID),
        *SEARCH,
        links={"200": {"GetFirstMessage": link("getMessage", id="$response.body#/messages/0/id")}},
    ),
    api(
        "/api/messages/{id}",
        "getMessage",
        "One message, per recipient",
        {"200": json_answer("The message", "MessageDetail"), "404": error("No such message")},
        ID_PARAM,
        links={"200": MESSAGE_LINKS},
    ),
    api(
        "/api/messages/{id}/clients",
        "getMessageClients",
        "Which mail clients and platforms opened the message (readers: unique copies)",
        {"200": json_answer(READERS, "Readers"), "404": error("No such message")},
        ID_PARAM,
    ),
    api(
        "/api/tags",
        "listTags",
        "Every tag with its message count and newest use, most recently used first",
        {"200": json_answer("The tags", "TagList")},
        links={"200": {"GetFirstTag": link("getTag", tag="$response.body#/tags/0/tag")}},
    ),
    api(
        "/api/tags/{tag}",
        "getTag",
        "A tag's campaign report over messages received in [since, until);"
        " format=csv: the same as CSV, one row per link then a totals row (empty url)",
        {
            "200": {
                "description": "The report",
                "content": {
                    "application/json": {"schema": ref("TagReport")},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            **JSON_400,
            "404": error("No message with this tag in that time"),
        },
        TAG_PARAM,
        *TIME_RANGE,
        query("format", "json (default) or csv", {"enum": ["json", "csv"]}),
    ),
    api(
        "/api/tags/{tag}/clients",
        "getTagClients",
        "Which mail clients and platforms opened the tag's messages",
        {"200": json_answer(READERS, "Readers"), **JSON_400},
        TAG_PARAM,
        *TIME_RANGE,
    ),
    api(
        "/api/messages/{id}/raw",
        "getRawMessage",
        "The logged copy of a message",
        {
            "200": answer("The message as it arrived", "message/rfc822"),
            "404": error("No such message, or it was not logged"),
        },
        ID_PARAM,
    ),
    api(
        "/api/events",
        "listEvents",
        "Events by id, with filters",
        {"200": json_answer("A page", "EventPage"), **JSON_400},
        *EVENT_FILTERS,
        page_size(100, MAX_EVENTS),
        links={
            "200": {
                "GetEventMessage": link("getMessage", id="$response.body#/events/0/message_id"),
            }
        },
    ),
    api(
        "/api/events/stream",
        "eventStream",
        "Server-Sent Events of new events; resumes with Last-Event-ID",
        {
            "200": answer("The stream (it never ends)", "text/event-stream", {"type": "string"}),
            **JSON_400,
            "503": error("Too many live feeds are open"),
        },
        *EVENT_FILTERS[1:],
        Param("Last-Event-ID", "header", "resume after this event id", EVENT_ID),
        query("last_event_id", "the same, for clients that cannot set headers", EVENT_ID),
    ),
    api(
        "/api/export.csv",
        "exportEvents",
        "Every event as CSV, streamed",
        {"200": answer("id,type,at,message_id,recipient,url,class,...", "text/csv"), **JSON_400},
        *EVENT_FILTERS,
    ),
    api(
        "/api/contacts/{address}",
        "getContact",
        "One recipient across messages (the CRM contact record)",
        {
            "200": json_answer("The contact", "Contact"),
            "400": error("Not an address"),
            "404": error("Nothing was sent to this address"),
        },
        ADDRESS_PARAM,
        links={
            "200": {
                "ContactPage": link("contactPage", address="$response.body#/address"),
                "EraseContact": link("eraseContact", address="$response.body#/address"),
            }
        },
    ),
    api(
        "/api/contacts/{address}",
        "eraseContact",
        "Erase what the store holds about an address",
        {"200": json_answer("What was erased", "Erased"), "400": error("Not an address")},
        ADDRESS_PARAM,
        method="delete",
    ),
    api("/api/openapi.json", "adminOpenapi", "This document", {"200": OPENAPI}),
    api(
        "/api/tracking-openapi.json",
        "trackingOpenapi",
        "The tracking listener's OpenAPI document",
        {"200": OPENAPI},
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        "ops",
        {"200": plain("The text exposition format"), **API_401},
    ),
    Operation("get", "/healthz", "adminHealthz", HEALTHZ_TEXT, "ops", HEALTHZ, public=True),
    Operation("get", "/readyz", "adminReadyz", READYZ_TEXT, "ops", READYZ, public=True),
)

# --- the tracking listener -------------------------------------------------------------

PIXEL_TOKEN = {
    "type": "string",
    "minLength": 1,
    "description": "the token the relay wrote; any other answers the same GIF and records nothing",
}
CLICK_TOKEN = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_-]+$",
    "maxLength": MAX_TOKEN_CHARS,
    "description": "URL-safe base64 (no padding), HMAC-signed",
}
GIF = answer("A 43-byte transparent GIF, whatever the token", "image/gif")
CLICK = {
    "302": redirect("A genuine link: to its URL (counted for GET, never for HEAD)"),
    "404": html("Not a link the relay made"),
}
TOKEN = (path("token", "the token", PIXEL_TOKEN),)
TRACKED = (  # (path, operationId stem, summary, answers, parameters); GET and HEAD each
    ("/o/{token}.gif", "pixel", "The open pixel (HEAD: never counted)", {"200": GIF}, TOKEN),
    (
        "/c/{token}",
        "click",
        "A tracked link (HEAD: never counted)",
        CLICK,
        (path("token", "the token", CLICK_TOKEN),),
    ),
    ("/healthz", "healthz", HEALTHZ_TEXT, HEALTHZ, ()),
    ("/readyz", "readyz", READYZ_TEXT, READYZ, ()),
)
TRACKING_ROUTES: tuple[Operation, ...] = tuple(
    Operation(method, route, name + method.title(), text, "tracking", answers, parameters)
    for route, name, text, answers, parameters in TRACKED
    for method in ("get", "head")
)

# --- schemas -----------------------------------------------------------------------------

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}
TIME = {"type": "string", "format": "date-time"}
WHEN = nullable("string", format="date-time")  # null: not (yet)


def record(properties: JsonObject, *required: str, **more: Any) -> JsonObject:
    """An object schema: its properties, and those every answer has."""
    out: JsonObject = {"type": "object", **more, "properties": properties}
    if required:
        out["required"] = list(required)
    return out


def array(items: JsonObject) -> JsonObject:
    return {"type": "array", "items": items}


COUNTS = {"type": "object", "additionalProperties": COUNT}
LINK = record({"url": STRING, "clicks": COUNTS}, "url", "clicks")
EVENT_SCHEMA: JsonObject = record(
    {
        "id": INTEGER,
        "type": {"enum": list(EVENT_TYPES)},
        "at": TIME,
        "message_id": STRING,
        "recipient": nullable("string", description="null: someone (a shared copy)"),
        "url": nullable("string"),
        "class": {"enum": list(EVENT_CLASSES)},
        "reasons": array(STRING),
        "inferred": BOOLEAN,
        "is_machine": BOOLEAN,
        "ip": STRING,
        "user_agent": STRING,
    },
    *("id", "type", "at", "message_id", "recipient", "class"),
)
RECIPIENT: JsonObject = record(
    {
        "address": nullable("string", description="null: someone"),
        "state": nullable("string"),
        "copy_id": nullable("integer"),
        "shared": BOOLEAN,
        "rewrite_note": STRING,
        "attempts": INTEGER,
        "last_reply": STRING,
        "queue_id": STRING,
        "next_attempt_at": WHEN,
        "delivered_at": WHEN,
        "opens": COUNTS,
        "clicks": COUNTS,
        "opened": {"enum": ["yes", "maybe", "no"]},
        "replies": INTEGER,
        "possibly_forwarded": BOOLEAN,
        "first_open": WHEN,
        "last_open": WHEN,
        "links": array(LINK),
    },
    *("address", "state", "opens", "clicks", "links"),
)
RATE = {"type": "number", "minimum": 0, "maximum": 1}
# Counts by class and unique_human, and rate: unique_human over delivered copies.
RATED_COUNTS = record({"rate": RATE}, "rate", additionalProperties=COUNT)
TAGS = array(STRING)
MESSAGE_HEAD = {"id": STRING, "sender": STRING, "subject": STRING, "created_at": TIME}
SUMMARY: JsonObject = record(
    {
        **MESSAGE_HEAD,
        "recipients": INTEGER,
        "opens": RATED_COUNTS,
        "clicks": RATED_COUNTS,
        "state": STRING,
        "states": COUNTS,
        "tags": TAGS,
    },
    *("id", "sender", "subject", "created_at", "recipients", "opens", "clicks"),
)
PLATFORM = {"enum": ["mobile", "desktop", "webmail", "unknown"]}
READ_BY = {"platform": PLATFORM, "human": COUNT, "proxy": COUNT}
TAG_TOTALS = ("messages", "recipients", "delivered", "bounced")
SCHEMAS: JsonObject = {
    "Error": record({"error": STRING}, "error"),
    "Event": EVENT_SCHEMA,
    "EventPage": record(
        {"events": array(ref("Event")), "next": nullable("integer", description="pass as since")},
        *("events", "next"),
    ),
    "MessagePage": record(
        {
            "messages": array(ref("MessageSummary")),
            "next": nullable("string", pattern=params.CURSOR, description="pass as cursor"),
        },
        *("messages", "next"),
    ),
    "MessageSummary": SUMMARY,
    "TagList": record(
        {
            "tags": array(
                record(
                    {
                        "tag": STRING,
                        "messages": {"type": "integer", "minimum": 1},
                        "last_used": TIME,
                    },
                    *("tag", "messages", "last_used"),
                )
            )
        },
        "tags",
    ),
    "TagReport": record(
        {
            "tag": STRING,
            "since": WHEN,
            "until": WHEN,
            **{key: COUNT for key in TAG_TOTALS},
            "opens": record(
                {"unique_human": COUNT, "rate": RATE, "unique_maybe": COUNT, "proxy_rate": RATE},
                *("unique_human", "rate", "proxy_rate"),
            ),
            "clicks": record(
                {"unique_human": COUNT, "rate": RATE, "click_to_open": RATE},
                *("unique_human", "rate", "click_to_open"),
            ),
            "links": array(record({"url": STRING, "unique_human": COUNT}, "url", "unique_human")),
        },
        *("tag", *TAG_TOTALS, "opens", "clicks", "links"),
        description="unique = copies; rates over delivered recipients (0.0: none delivered)",
    ),
    "Readers": record(
        {
            "clients": array(record({"client": STRING, **READ_BY}, "client", *READ_BY)),
            "platforms": array(record(READ_BY, *READ_BY)),
        },
        *("clients", "platforms"),
        description="human: copies a person opened with it; proxy: copies its proxy fetched",
    ),
    "Recipient": RECIPIENT,
    "MessageDetail": record(
        {
            **MESSAGE_HEAD,
            "tags": TAGS,
            "mail_from": STRING,
            "message_id_header": STRING,
            "tracking": record(
                {
                    "opens": BOOLEAN,
                    "clicks": BOOLEAN,
                    "per_recipient": BOOLEAN,
                    "reasons": array(STRING),
                }
            ),
            "recipients": array(ref("Recipient")),
            "someone": ref("Recipient"),
            "links": array(LINK),
        },
        *("id", "sender", "subject", "created_at", "tracking", "recipients", "someone"),
    ),
    "Contact": record(
        {
            "address": STRING,
            "last_open": WHEN,
            "last_click": WHEN,
            "last_reply": WHEN,
            "counts": {
                "type": "object",
                "description": "type -> class -> count",
                "additionalProperties": COUNTS,
            },
            "messages": array(
                record({**MESSAGE_HEAD, "state": STRING, "delivered_at": WHEN}, "id", "state")
            ),
            "timeline": array(ref("Event")),
        },
        *("address", "counts", "messages", "timeline"),
    ),
    "Erased": record({"address": STRING, "erased": COUNTS}, "address", "erased"),
}


# --- the documents -----------------------------------------------------------------------


def _parameter(param: Param) -> JsonObject:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.where == "path",
        "description": param.description,
        "schema": param.schema,
    }


def _operation(op: Operation) -> JsonObject:
    responses: JsonObject = {}
    for status, response in op.responses.items():
        links = op.links.get(status)
        responses[status] = {**response, "links": dict(links)} if links else dict(response)
    out: JsonObject = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [_parameter(p) for p in op.params],
        "responses": responses,
    }
    if op.body is not None:
        out["requestBody"] = op.body
    if op.public:
        out["security"] = []
    return out


def _paths(routes: tuple[Operation, ...]) -> JsonObject:
    paths: JsonObject = {}
    for op in routes:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return paths


def openapi_document() -> JsonObject:
    """The admin listener: every route; the token is needed unless ``security`` is empty."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relay admin",
            "version": "1",
            "description": "Bearer token (admin.token) or the dashboard's login cookie.",
        },
        "paths": _paths(ADMIN_ROUTES),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": session.COOKIE},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }


def tracking_document(base_url: str) -> JsonObject:
    """The public tracking listener, at ``base_url``: nothing there needs a token."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "relay tracking", "version": "1"},
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "paths": _paths(TRACKING_ROUTES),
    }


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(openapi_document())


def tracking_openapi_handler(base_url: str) -> Handler:
    document = tracking_document(base_url)

    async def handle(request: web.Request) -> web.Response:
        return json_response(document)

    return handle
