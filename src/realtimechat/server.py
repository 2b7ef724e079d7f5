"""Running a node under uvicorn, with a graceful drain on SIGTERM (M-1)."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from realtimechat.bootstrap import build
from realtimechat.edge.app import create_app
from realtimechat.observability.logging import configure_logging
from realtimechat.observability.tracing import configure_tracing
from realtimechat.observability.tracing import shutdown as shutdown_tracing
from realtimechat.settings import Settings
from realtimechat.storage.migrate import upgrade

log = logging.getLogger("realtimechat")


class _Server(uvicorn.Server):
    """On the first SIGTERM/SIGINT: mark draining, tell WebSockets to go, then stop.

    uvicorn itself then stops accepting, lets in-flight requests finish within
    the drain period, and runs the lifespan shutdown. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI, settings: Settings) -> None:
        super().__init__(config)
        self._app = app
        self._settings = settings
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None:
            super().handle_exit(sig, frame)
            return
        log.info("draining: going_away to WebSockets, then finish in-flight requests")
        self._drain_task = asyncio.get_event_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self._app.state.gateway.drain(self._settings.drain_s)
        finally:
            self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"RealTimeChat is running at http://{host}:{port}", flush=True)


def serve(settings: Settings) -> None:
    """Migrate, then run one node until it is told to stop."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings.otel_endpoint, "realtimechat")
    upgrade(settings)
    deps = build(settings)
    app = create_app(deps)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        lifespan="on",
        log_level=settings.log_level,
        log_config=None,  # our structlog setup handles uvicorn's records too
        access_log=False,
        ws_ping_interval=settings.ws.heartbeat_ms / 1000,
        ws_ping_timeout=settings.ws.heartbeat_ms / 1000,
        timeout_graceful_shutdown=int(settings.drain_s),
        ws_max_size=settings.limits.max_request_bytes,
        # Chat frames are small: compressing each one for each listener costs more
        # CPU than the bytes it saves on the wire.
        ws_per_message_deflate=False,
    )
    _Server(config, app, settings).run()
    shutdown_tracing()
