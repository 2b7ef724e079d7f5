"""The ASGI application of one node."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from realtimechat.bootstrap import Deps
from realtimechat.edge import errors, openapi
from realtimechat.edge.catchup import CatchUp
from realtimechat.edge.gateway import Gateway
from realtimechat.edge.headers import SecurityHeadersMiddleware
from realtimechat.edge.hub import Hub
from realtimechat.edge.observe import ObserveMiddleware
from realtimechat.edge.routes import auth, files, health, messages, notifications, teams
from realtimechat.observability import metrics, tracing
from realtimechat.resilience.shedding import ASGIApp, GuardMiddleware
from realtimechat.services.outbox import OutboxAcks
from realtimechat.web import STATIC_DIR
from realtimechat.worker.main import Worker, relay_publish

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


def create_app(deps: Deps) -> FastAPI:
    """Build the app over already-built dependencies; the lifespan starts and stops them."""
    redis = deps.settings.redis
    # In one process nothing can come between a commit and its publish; across nodes
    # the bus can lose or reorder what the database has: an outbox, a catch-up from
    # it, and a short hold for events that overtook an earlier one.
    lossy = deps.bus.needs_outbox
    hub = Hub(deps.settings.ws.heartbeat_ms, reorder_ms=redis.reorder_ms if lossy else 0.0)
    gateway = Gateway(deps, hub)
    catch_up = (
        CatchUp(
            hub=hub,
            bus_health=deps.bus.health,
            last_seqs=deps.channels.last_seqs,
            joins_since=deps.channels.joins_since,
            fast_s=redis.catchup_fast_s,
            slow_s=redis.catchup_slow_s,
        )
        if lossy
        else None
    )
    acks = OutboxAcks(uow=deps.uow) if lossy else None
    worker = (
        Worker(
            uow=deps.uow, publish=relay_publish(deps.bus), settings=deps.settings, files=deps.files
        )
        if deps.settings.run_worker
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        deps.db.start()
        revocations = deps.auth.revocations
        # Known before the first request; then each new one closes its sockets here.
        await revocations.refresh()
        revocations.on_revoked(hub.close_sessions)
        revocations.start()
        deps.bus.subscribe(hub.on_event, hub.on_ephemeral)
        if acks is not None:
            deps.bus.on_confirmed(acks.published)
            acks.start()
        await deps.bus.start()
        await deps.files.ready()
        hub.start()
        for task in (catch_up, worker):
            if task is not None:
                task.start()
        try:
            yield
        finally:
            await gateway.drain(deps.settings.drain_s)
            await revocations.stop()
            for task in (catch_up, worker):
                if task is not None:
                    await task.stop()
            await hub.stop()
            await deps.bus.close()
            if acks is not None:
                await acks.stop()
            await deps.limiter.close()
            await deps.files.store.close()
            await deps.db.close()

    app = NodeApp(
        title="RealTimeChat",
        version="1",
        summary="Team chat that loses, duplicates and reorders nothing.",
        lifespan=lifespan,
        # Off by default: Swagger UI comes from a CDN, run on the app's own origin.
        docs_url="/docs" if deps.settings.api_docs else None,
        redoc_url=None,
    )
    app.state.deps = deps
    app.state.hub = hub
    app.state.gateway = gateway
    app.state.catch_up = catch_up
    app.state.worker = worker
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

    metrics.WS_CONNECTIONS.set_function(hub.connection_count)
    metrics.BUS_UP.set_function(lambda: 1.0 if deps.bus.health()[0] == "ok" else 0.0)
    tracing.instrument_app(app)
    app.add_middleware(
        GuardMiddleware,
        max_in_flight=deps.settings.limits.max_in_flight,
        max_bytes=deps.settings.limits.max_request_bytes,
        retry_after_s=deps.settings.limits.retry_after_s,
        unbounded_body_prefixes=(BLOBS_PREFIX,),
    )
    # Outermost: shed requests are counted and carry a request id too.
    app.add_middleware(ObserveMiddleware)
    return app
