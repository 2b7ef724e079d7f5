"""Security headers on every HTTP response: the page, its files, the API, downloads, errors.

Pure ASGI (not BaseHTTPMiddleware, which buffers streamed bodies and does not see
WebSockets): it only adds headers to `http.response.start`, never touches a body.
"""

from __future__ import annotations

from realtimechat.resilience.shedding import ASGIApp, Message, Receive, Scope, Send

# The web client: its own scripts, styles and images only, no inline script, no plugins,
# never framed. `connect-src 'self'` covers the WebSocket of the same host (CSP Level 3).
APP_CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
# JSON answers and everything else: nothing in them may load or run anything.
API_CSP = "default-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
# A user's file opened in the browser runs in a unique origin: no script, no cookies,
# no same-origin requests, even if it is HTML or SVG.
DOWNLOAD_CSP = API_CSP + "; sandbox"
# Swagger UI (RTC_API_DOCS=true only): FastAPI's page loads it from jsDelivr and starts
# it with an inline script, so /docs alone trusts that CDN.
_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'self'; script-src 'self' 'unsafe-inline' {_CDN}; "
    f"style-src 'self' 'unsafe-inline' {_CDN}; img-src 'self' data: https://fastapi.tiangolo.com; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # for browsers that predate frame-ancestors
    (b"referrer-policy", b"no-referrer"),  # signed file URLs must not leak onwards
)


def policy_for(path: str, *, docs_paths: frozenset[str], download_prefix: str) -> str:
    """The Content-Security-Policy for a request path."""
    if path.startswith(download_prefix):
        return DOWNLOAD_CSP
    if path in docs_paths:
        return DOCS_CSP
    if path == "/" or path.startswith("/static/"):
        return APP_CSP
    return API_CSP


class SecurityHeadersMiddleware:
    """Adds CSP, nosniff, frame and referrer headers that a response did not set itself."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        docs_paths: frozenset[str] = frozenset(),
        download_prefix: str = "/api/v1/blobs/",
    ) -> None:
        self.app = app
        self.docs_paths = docs_paths
        self.download_prefix = download_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = policy_for(
            scope["path"], docs_paths=self.docs_paths, download_prefix=self.download_prefix
        ).encode()

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                for name, value in (*_COMMON, (b"content-security-policy", csp)):
                    if name not in present:
                        headers.append((name, value))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, secured_send)
