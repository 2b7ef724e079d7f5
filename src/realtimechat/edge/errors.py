"""The one place errors become answers: RFC 9457 problem details over HTTP, error
frames (and close codes) over the WebSocket.

A domain error (domain/errors.py) is mapped by its class: `STATUS` gives its HTTP
status, `close_code_of` the close code of a WebSocket session it ends, `error_frame`
its frame; the send metric's outcome follows the same status (edge/observe.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from realtimechat.domain import errors as e
from realtimechat.edge import frames
from realtimechat_client import protocol

PROBLEM_TYPE = "https://realtimechat.dev/problems/"

STATUS: list[tuple[type[e.ChatError], int]] = [
    (e.TooLarge, 413),
    (e.NotFound, 404),
    (e.Forbidden, 403),
    (e.Unauthorized, 401),
    (e.Conflict, 409),
    (e.IdempotencyMismatch, 422),
    (e.PreconditionRequired, 428),
    (e.PreconditionFailed, 412),
    (e.MessageDeleted, 410),
    (e.ValidationFailed, 422),
    (e.RateLimited, 429),
    (e.Overloaded, 503),
    (e.Unavailable, 503),
    (e.UploadGone, 410),
    (e.HostNotAllowed, 400),
]

_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("request_too_large", "Request too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def status_of(err: e.ChatError) -> int:
    """The HTTP status for a domain error."""
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 500


# ---- WebSocket: error frames and close codes ----------------------------------------

CLOSE: list[tuple[type[e.ChatError], int]] = [
    (e.Unauthorized, protocol.CLOSE_UNAUTHORIZED),
]


def close_code_of(err: e.ChatError) -> int:
    """The close code of a session that `err` ends (before or at its start): 4401 for
    authentication, else 1013 (try again: a dependency failed)."""
    for cls, code in CLOSE:
        if isinstance(err, cls):
            return code
    return protocol.CLOSE_TRY_AGAIN


def error_frame(err: e.ChatError, frame: Mapping[str, object] | None = None) -> dict[str, object]:
    """The error frame for a domain error answering `frame`: its code, detail and details."""
    extra: dict[str, object] = dict(err.extra)
    retry = getattr(err, "retry_after_s", None)
    if retry is not None:
        extra["retry_after_ms"] = retry * 1000
    return frames.error(err.code, err.detail, frame, **extra)


def invalid_frame_error(exc: ValidationError, frame: Mapping[str, object]) -> dict[str, object]:
    """The error frame for a client frame its protocol model refused.

    An unknown type is `unknown_frame_type`; anything else `validation_error`, naming
    the first offending `field` (never its value).
    """
    first = exc.errors(include_url=False, include_input=False)[0]
    kind = frame.get("type")
    if first["type"] == "union_tag_invalid":
        return frames.error("unknown_frame_type", f"unknown frame type {kind!r}", frame)
    loc = list(first["loc"])
    if loc and loc[0] == kind:  # the union's tag: the frame's type, not a field
        loc = loc[1:]
    where = ".".join(str(p) for p in loc)
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    if loc and isinstance(loc[0], str):
        return frames.error("validation_error", message, frame, field=loc[0])
    return frames.error("validation_error", message, frame)


def internal_error_frame(frame: Mapping[str, object] | None = None) -> dict[str, object]:
    """The error frame for a failure that is ours (it was logged)."""
    return frames.error("internal_error", "the error was logged", frame)


# ---- HTTP: problem details -------------------------------------------------------------


def problem(
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An application/problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def chat_error_response(err: e.ChatError) -> Response:
    """The problem response for a domain error, with Retry-After where it applies."""
    headers: dict[str, str] = {}
    retry = getattr(err, "retry_after_s", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    budget = getattr(err, "budget", None)  # RateLimitExceeded: the RateLimit-* headers
    if budget is not None:
        headers.update(budget.headers())
    status = status_of(err)
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return problem(status, err.code, err.title, err.detail, headers or None, **err.extra)


def _is_json(content_type: str) -> bool:
    """Whether a Content-Type header names JSON (application/json or application/*+json)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _json_invalid_detail(err: Mapping[str, Any]) -> str:
    """What is wrong with a body that is not JSON, and where (FastAPI's json_invalid error)."""
    ctx = err.get("ctx") or {}
    reason = str(ctx.get("error") or err.get("msg") or "JSON decode error")
    loc = list(err.get("loc", ()))
    position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
    where = f" at position {position}" if position is not None else ""
    return f"the body is not valid JSON: {reason}{where}"


def _encodable(value: Any) -> Any:
    """`value` as orjson can always write it: the input that failed validation may hold
    lone surrogates or integers past 64 bits, and must not turn a 422 into a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool | float | None) or (
        isinstance(value, int) and -(2**63) <= value < 2**64
    ):
        return value
    return _encodable(str(value))


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    async def on_chat_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, e.ChatError)
        return chat_error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        raw = exc.errors()
        errs = [
            {
                "loc": [_encodable(p) for p in err.get("loc", ())],
                "msg": _encodable(err.get("msg")),
                "type": _encodable(err.get("type")),
            }
            for err in raw
        ]
        malformed = next((err for err in raw if err.get("type") == "json_invalid"), None)
        if malformed is not None:
            return problem(
                400,
                "malformed_json",
                "Request body is not valid JSON",
                _json_invalid_detail(malformed),
                errors=errs,
            )
        content_type = request.headers.get("content-type", "")
        if (
            exc.body  # a body was sent (FastAPI leaves a non-JSON one as raw bytes)
            and not _is_json(content_type)
            and any(err["loc"] == ["body"] for err in errs)
        ):
            media = content_type.split(";", 1)[0].strip() or "none"
            return problem(
                415,
                "unsupported_media_type",
                "Unsupported media type",
                "send the body as JSON with Content-Type: application/json"
                f" (the request's Content-Type was {media})",
                headers={"Accept": "application/json"},
            )
        first = errs[0] if errs else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        return problem(
            422,
            "validation_error",
            "Invalid request",
            f"{where}: {first['msg']}" if where else str(first["msg"]),
            errors=errs,
        )

    async def on_http(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem(exc.status_code, code, title, detail, dict(exc.headers or {}) or None)

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        return problem(500, "internal_error", "Internal error", "the error was logged")

    app.add_exception_handler(e.ChatError, on_chat_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
