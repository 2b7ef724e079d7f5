"""Per-request observability: a request id, RED metrics by route template, log context.

And the one rule sends are counted by, whatever the transport: `count_send` with the
HTTP status the outcome has (a domain error's is edge/errors.status_of). The command
pipeline (edge/commands.py) counts every send it runs; this middleware counts the REST
sends refused before reaching it (shed, unauthenticated, an invalid body).
"""

from __future__ import annotations

import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

import structlog

from realtimechat.observability import metrics
from realtimechat.resilience.shedding import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SEND_ROUTE = ("POST", "/api/v1/messages")
_QUIET = frozenset({"/livez", "/readyz", "/metrics"})  # probes every few seconds
access = structlog.get_logger("realtimechat.access")
# Set around a REST send request: the pipeline notes there that it counted the send.
_send_counted: ContextVar[list[bool] | None] = ContextVar("rtc_send_counted", default=None)


def send_outcome(status: int) -> str:
    """ok, client_error (the sender's mistake: outside the SLO) or server_error."""
    if status < 400:
        return "ok"
    return "server_error" if status >= 500 else "client_error"


def count_send(transport: str, status: int) -> None:
    """Count one send (rest or ws) by the HTTP status of its outcome."""
    metrics.SENDS.labels(transport, send_outcome(status)).inc()
    counted = _send_counted.get()
    if counted is not None:
        counted.append(True)


class ObserveMiddleware:
    """Outermost: every request, shed or not, is counted and carries a request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        counted: list[bool] = []
        token = _send_counted.set(counted)
        try:
            await self.app(scope, receive, tagged_send)
        finally:
            _send_counted.reset(token)
            metrics.HTTP_IN_FLIGHT.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            elapsed = time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, route).observe(elapsed)
            if route not in _QUIET:
                # The route template, never the raw path or query: no ids, no signatures.
                access.info(
                    "http request",
                    method=method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            if (method, route) == _SEND_ROUTE and not counted:
                count_send("rest", status)


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Any = scope.get("headers", ())
    for key, value in headers:
        if key == name:
            return str(value.decode("latin-1"))
    return None
