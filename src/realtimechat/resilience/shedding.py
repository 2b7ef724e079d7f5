"""ASGI guards: bounded in-flight requests and bounded request bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from realtimechat.observability import metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Health probes must answer even when the node sheds everything else.
_EXEMPT = ("/livez", "/readyz", "/metrics")


async def _problem(send: Send, status: int, code: str, title: str, headers: list[Any]) -> None:
    body = orjson.dumps(
        {
            "type": f"https://realtimechat.dev/problems/{code}",
            "title": title,
            "status": status,
            "code": code,
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class GuardMiddleware:
    """Sheds HTTP requests beyond `max_in_flight` (503) and bodies beyond `max_bytes` (413)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        max_bytes: int,
        retry_after_s: int,
        unbounded_body_prefixes: tuple[str, ...] = (),
    ):
        self.app = app
        self.max_in_flight = max_in_flight
        self.max_bytes = max_bytes
        # Paths whose handler streams and bounds the body itself (signed file uploads).
        self.unbounded = unbounded_body_prefixes
        self.retry_after = str(retry_after_s).encode()
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            metrics.SHED.labels("in_flight").inc()
            await _problem(
                send,
                503,
                "overloaded",
                "Server busy, retry shortly",
                [(b"retry-after", self.retry_after)],
            )
            return
        if self.unbounded and scope["path"].startswith(self.unbounded):
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                metrics.SHED.labels("body_too_large").inc()
                await _problem(send, 413, "request_too_large", "Request too large", [])
                return
        seen = 0
        started = replaced = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started, replaced
            if seen > self.max_bytes and not started:
                # The app caught _BodyTooLarge and answers itself (FastAPI: 400); send 413.
                started = replaced = True
                await _problem(send, 413, "request_too_large", "Request too large", [])
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                # Headers the handlers left in request.state (RateLimit-*): FastAPI drops
                # a dependency's response headers when a route returns a Response itself.
                extra: dict[str, str] = scope.get("state", {}).get("response_headers", {})
                if extra:
                    message["headers"] = [
                        *message.get("headers", ()),
                        *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                    ]
            await send(message)

        self.in_flight += 1
        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLarge:
            if not started:
                await _problem(send, 413, "request_too_large", "Request too large", [])
        finally:
            self.in_flight -= 1
