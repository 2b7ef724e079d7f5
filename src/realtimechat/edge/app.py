"""The ASGI application of one node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from realtimechat.edge import errors, openapi
from realtimechat.edge.deps import Deps
from realtimechat.edge.gateway import Gateway
from realtimechat.edge.headers import SecurityHeadersMiddleware
from realtimechat.edge.observe import ObserveMiddleware
from realtimechat.edge.routes import auth, files, health, messages, notifications, teams
from realtimechat.observability import tracing
from realtimechat.observability.health import Health
from realtimechat.resilience.shedding import ASGIApp, GuardMiddleware
from realtimechat.settings import Settings
from realtimechat.web import STATIC_DIR

BLOBS_PREFIX = "/api/v1/blobs/"  # signed file links of the local-disk store


class NodeApp(FastAPI):
    """FastAPI with the security headers outside everything, Starlette's own 500s included.

    Starlette answers an unhandled exception from its outermost middleware, outside any
    `add_middleware`; wrapping the built stack is the one place that sees that answer too.
    """

    def build_middleware_stack(self) -> ASGIApp:
        docs = (self.docs_url, self.swagger_ui_oauth2_redirect_url) if self.docs_url else ()
        return SecurityHeadersMiddleware(
            super().build_middleware_stack(),
            docs_paths=frozenset(p for p in docs if p),
            download_prefix=BLOBS_PREFIX,
        )


class AppNode(Protocol):
    """What create_app mounts: a built node (bootstrap.Node)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def deps(self) -> Deps: ...

    @property
    def gateway(self) -> Gateway: ...

    @property
    def health(self) -> Health: ...

    def running(self) -> AbstractAsyncContextManager[None]:
        """Start the node; stop it on exit."""
        ...


def create_app(node: AppNode) -> FastAPI:
    """Mount the routes, middleware and web client over a built node; its lifespan runs it."""
    settings = node.settings
    gateway = node.gateway

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with node.running():
            yield

    app = NodeApp(
        title="RealTimeChat",
        version="1",
        summary="Team chat that loses, duplicates and reorders nothing.",
        lifespan=lifespan,
        # Off by default: Swagger UI comes from a CDN, run on the app's own origin.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
    )
    # Read by the route dependencies of edge/deps.py; the node itself for in-process tests.
    app.state.deps = node.deps
    app.state.health = node.health
    app.state.node = node
    errors.install(app)
    openapi.install(app)
    for module in (auth, teams, messages, notifications, files, health):
        app.include_router(module.router)

    @app.websocket("/api/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        await gateway.serve(ws)

    # The browser client: its page at /, its files under /static (not mounted at /,
    # where the mount would answer API paths' 404s and 405s itself).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    tracing.instrument_app(app)
    app.add_middleware(
        GuardMiddleware,
        max_in_flight=settings.limits.max_in_flight,
        max_bytes=settings.limits.max_request_bytes,
        retry_after_s=settings.limits.retry_after_s,
        unbounded_body_prefixes=(BLOBS_PREFIX,),
    )
    # Outermost: shed requests are counted and carry a request id too.
    app.add_middleware(ObserveMiddleware)
    return app
