"""/openapi.json as the server really answers: response bodies, problem+json, bearer auth.

The routes return raw responses (edge/responses.py), so FastAPI knows neither their
shapes nor the errors edge/errors.py and the guards send. This module documents them
from one table, keyed by (method, path), applied to the schema FastAPI generates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from realtimechat.edge import models_out as out
from realtimechat.edge.auth import anonymous_limit, current_user
from realtimechat.edge.routes.notifications import admin

REF = "#/components/schemas/{model}"
PROBLEM_MEDIA = "application/problem+json"

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "the access_token from POST /api/v1/auth/login or /auth/refresh",
    },
    "admin": {
        "type": "http",
        "scheme": "bearer",
        "description": "the operator's RTC_ADMIN_TOKEN; without one the admin API answers 404",
    },
}

ERRORS: dict[int, str] = {
    400: "The body is not valid JSON (malformed_json)",
    401: "No valid credentials: missing, invalid, expired or revoked token (unauthorized, ...)",
    403: "Not allowed: e.g. not the channel's admin, or a cookie call without X-RTC-CSRF",
    404: "No such resource, or not visible to the caller (the same answer either way)",
    409: "Conflicts with the current state (email_taken, quota_exceeded, upload_incomplete, ...)",
    410: "The message was deleted (message_deleted)",
    412: "If-Match names another version than the current one (version_conflict)",
    413: "The request body, or the declared file, is larger than the limit",
    415: "The body is not sent as application/json (unsupported_media_type)",
    422: "The request is invalid (validation_error; `errors` lists each problem)",
    428: "If-Match is required (precondition_required)",
    429: "Rate limit reached (rate_limited); Retry-After says when to try again",
    503: "Overloaded or a dependency is unavailable; Retry-After says when to try again",
}

_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}},
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "the scheme to authenticate with",
            "schema": {"type": "string"},
        }
    },
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
_ETAG = {
    "ETag": {
        "description": "the message's version, for If-Match and If-None-Match",
        "required": True,
        "schema": {"type": "string"},
    }
}
_LOCATION = {
    "Location": {
        "description": "a signed download URL that expires",
        "required": True,
        "schema": {"type": "string"},
    }
}


@dataclass(frozen=True)
class Answer:
    """One success response: its body model (None for no body), and its headers."""

    model: type[BaseModel] | None
    description: str
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Doc:
    """What one operation answers: the success responses and its own error statuses."""

    success: Mapping[int, Answer]
    errors: frozenset[int] = frozenset()


def _doc(*errors: int, **success: Answer) -> Doc:
    """A Doc from `s200=Answer(...)`-style keywords (status codes are not identifiers)."""
    return Doc({int(k.removeprefix("s")): v for k, v in success.items()}, frozenset(errors))


_MSG = Answer(out.Message, "The message", _ETAG)
_DELETED = Answer(None, "Done; nothing to return")
_API = "/api/v1"

# Each operation's own error statuses; `_describe_operation` adds those that follow from
# the route: 401 (a token), 404 (path ids), 400/415 (a JSON body), 422 (parameters or a
# body), 413/503 (the request guards), 429 (a rate-limit dependency).
_V1: dict[tuple[str, str], Doc] = {
    ("POST", "/auth/register"): _doc(409, s201=Answer(out.User, "The new account")),
    ("POST", "/auth/login"): _doc(401, s200=Answer(out.TokenPair, "Access and refresh tokens")),
    ("POST", "/auth/refresh"): _doc(401, 403, s200=Answer(out.TokenPair, "A new token pair")),
    ("POST", "/auth/logout"): _doc(403, s204=Answer(None, "The login is signed out")),
    ("GET", "/users/me"): _doc(404, s200=Answer(out.User, "The caller's account")),
    ("POST", "/teams"): _doc(s201=Answer(out.Team, "The new team; the caller owns it")),
    ("GET", "/teams"): _doc(s200=Answer(out.TeamList, "The caller's teams")),
    ("GET", "/teams/{team_id}"): _doc(s200=Answer(out.Team, "The team")),
    ("POST", "/teams/{team_id}/members"): _doc(
        403,
        s200=Answer(out.Member, "Already a member"),
        s201=Answer(out.Member, "Added"),
        s202=Answer(out.Invitation, "Invited by e-mail"),
    ),
    ("GET", "/teams/{team_id}/members"): _doc(s200=Answer(out.MemberList, "The team's members")),
    ("POST", "/teams/{team_id}/channels"): _doc(s201=Answer(out.Channel, "The new channel")),
    ("GET", "/teams/{team_id}/channels"): _doc(
        s200=Answer(out.ChannelList, "The team's channels the caller can see")
    ),
    ("GET", "/channels"): _doc(s200=Answer(out.ChannelList, "The caller's channels and DMs")),
    ("GET", "/channels/{channel_id}"): _doc(s200=Answer(out.ChannelView, "The channel")),
    ("PATCH", "/channels/{channel_id}"): _doc(403, s200=Answer(out.Channel, "Renamed")),
    ("GET", "/channels/{channel_id}/members"): _doc(
        s200=Answer(out.MemberList, "The channel's members")
    ),
    ("POST", "/channels/{channel_id}/members"): _doc(
        403, s200=Answer(out.Member, "Already a member"), s201=Answer(out.Member, "Added")
    ),
    ("DELETE", "/channels/{channel_id}/members/{member_id}"): _doc(
        403, s204=Answer(None, "Removed")
    ),
    ("POST", "/dms"): _doc(
        404,
        s200=Answer(out.ChannelView, "The existing DM channel"),
        s201=Answer(out.ChannelView, "The new DM channel"),
    ),
    ("POST", "/channels/{channel_id}/read"): _doc(403, s200=Answer(out.ReadMarker, "Moved")),
    ("POST", "/messages"): _doc(
        403,
        404,
        s200=Answer(out.Message, "Already sent (a retry)", _ETAG),
        s201=Answer(out.Message, "Sent", _ETAG),
    ),
    ("GET", "/messages/{message_id}"): _doc(
        s200=_MSG, s304=Answer(None, "Unchanged since the If-None-Match ETag", _ETAG)
    ),
    ("PUT", "/messages/{message_id}"): _doc(403, 410, 412, 428, s200=_MSG),
    ("DELETE", "/messages/{message_id}"): _doc(
        403, 412, 428, s200=Answer(out.Message, "The tombstone", _ETAG)
    ),
    ("GET", "/channels/{channel_id}/messages"): _doc(
        s200=Answer(out.HistoryPage, "A page of messages")
    ),
    ("GET", "/channels/{channel_id}/events"): _doc(s200=Answer(out.EventPage, "A page of events")),
    ("POST", "/devices"): _doc(
        s200=Answer(out.Device, "Already registered"), s201=Answer(out.Device, "Registered")
    ),
    ("GET", "/devices"): _doc(s200=Answer(out.DeviceList, "The caller's devices")),
    ("DELETE", "/devices/{device_id}"): _doc(s204=_DELETED),
    ("GET", "/notification-settings"): _doc(s200=Answer(out.NotificationSettings, "Settings")),
    ("PUT", "/notification-settings"): _doc(s200=Answer(out.NotificationSettings, "Settings")),
    ("GET", "/channels/{channel_id}/notification-settings"): _doc(
        403, s200=Answer(out.ChannelNotificationSettings, "The channel's settings")
    ),
    ("PUT", "/channels/{channel_id}/notification-settings"): _doc(
        403, s200=Answer(out.ChannelNotificationSettings, "The channel's settings")
    ),
    ("GET", "/admin/flags"): _doc(404, s200=Answer(out.FlagList, "Every feature flag")),
    ("PUT", "/admin/flags/{name}"): _doc(s200=Answer(out.Flag, "The flag as set")),
    ("POST", "/files"): _doc(
        400, 404, 409, s201=Answer(out.FileUpload, "Reserved; upload the bytes")
    ),
    ("POST", "/files/{file_id}/complete"): _doc(409, 410, s200=Answer(out.File, "Ready to attach")),
    ("DELETE", "/files/{file_id}"): _doc(s204=Answer(None, "Cancelled or deleted")),
    ("GET", "/files/{file_id}"): _doc(400, s302=Answer(None, "Go to the download URL", _LOCATION)),
    ("GET", "/files/{file_id}/meta"): _doc(s200=Answer(out.File, "The file")),
    ("GET", "/teams/{team_id}/storage"): _doc(s200=Answer(out.StorageUsage, "Storage usage")),
}
TABLE: dict[tuple[str, str], Doc] = {
    **{(method, _API + path): doc for (method, path), doc in _V1.items()},
    ("GET", "/livez"): _doc(s200=Answer(out.Livez, "The process is up")),
    ("GET", "/readyz"): _doc(
        s200=Answer(out.Readyz, "Ready: ok or degraded"),
        s503=Answer(out.Readyz, "Not ready: down or draining"),
    ),
}
# GuardMiddleware lets the health probes through: they must answer under load.
UNGUARDED = frozenset({"/livez", "/readyz"})


def install(app: FastAPI) -> None:
    """Make `app.openapi()` answer the documented schema (built once per route set)."""
    generate = app.openapi  # FastAPI's own, cached until the routes change
    described: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        spec = generate()
        if not described or described[0] is not spec:
            describe(spec, app.routes)
            described[:] = [spec]
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def describe(spec: dict[str, Any], routes: Sequence[BaseRoute]) -> None:
    """Rewrite FastAPI's generated schema in place to document what the server answers."""
    components = spec.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name, schema in _model_schemas().items():
        if name in schemas:
            raise ValueError(f"response model {name} collides with a request model's name")
        schemas[name] = schema
    components["securitySchemes"] = SECURITY_SCHEMES
    # Route contexts, as FastAPI's own generator walks them (included routers are lazy).
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        calls = set(_calls(route.dependant))
        path = route.path_format or ""
        for method in sorted(route.methods or ()):
            operation = spec["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _describe_operation(operation, method, path, calls)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _describe_operation(
    operation: dict[str, Any], method: str, path: str, calls: set[Callable[..., Any]]
) -> None:
    responses: dict[str, Any] = operation["responses"]
    responses.pop("422", None)  # FastAPI's HTTPValidationError: never sent
    doc = TABLE.get((method, path))
    if doc is not None:
        responses.clear()  # FastAPI's guess: the route's status with an empty schema
        for status, answer in sorted(doc.success.items()):
            responses[str(status)] = _success(answer)
    errors = set(doc.errors if doc is not None else ())
    params = operation.get("parameters", [])
    has_body = "requestBody" in operation
    if current_user in calls:
        operation["security"] = [{"bearer": []}]
        errors.add(401)
    if admin in calls:
        operation["security"] = [{"admin": []}]
        errors |= {401, 404}
    if any(p["in"] == "path" for p in params):
        errors.add(404)
    if has_body:
        errors |= {400, 415}
    if has_body or params:
        errors.add(422)
    if current_user in calls or anonymous_limit in calls:
        errors.add(429)
    if path not in UNGUARDED:
        errors |= {413, 503}
    for status in sorted(errors):
        if str(status) not in responses:
            responses[str(status)] = _problem(status)


def _success(answer: Answer) -> dict[str, Any]:
    response: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        ref = {"$ref": REF.format(model=answer.model.__name__)}
        response["content"] = {"application/json": {"schema": ref}}
    if answer.headers:
        response["headers"] = dict(answer.headers)
    return response


def _problem(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERRORS[status],
        "content": {PROBLEM_MEDIA: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if status in _ERROR_HEADERS:
        response["headers"] = _ERROR_HEADERS[status]
    return response


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every dependency a route runs, however deeply nested."""
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _model_schemas() -> dict[str, Any]:
    """The JSON Schemas of the response models, with refs into components.schemas."""
    _, top = models_json_schema(
        [(model, "serialization") for model in out.MODELS], ref_template=REF
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs
