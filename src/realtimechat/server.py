"""Running a node under uvicorn, with a graceful drain on SIGTERM (M-1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtimechat.bootstrap import Node, build
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

    def __init__(
        self,
        config: uvicorn.Config,
        node: Node,
        settings: Settings,
        websocket_closed: asyncio.Event,
    ) -> None:
        super().__init__(config)
        self._node = node
        self._settings = settings
        self._websocket_closed = websocket_closed
        self._drain_task: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_task is not None:
            super().handle_exit(sig, frame)
            return
        log.info("draining: going_away to WebSockets, then finish in-flight requests")
        self._drain_task = asyncio.get_event_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.drain_s
        try:
            await self._node.gateway.drain(self._settings.drain_s)
            # Sending a close frame returns at once; the socket stays open until the
            # client answers it or the close timeout passes. Keep listening (turning
            # new WebSockets away) until then: uvicorn's shutdown would cut them off.
            while self._closing_websockets() and (left := deadline - loop.time()) > 0:
                self._websocket_closed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._websocket_closed.wait(), left)
        finally:
            self.should_exit = True

    def _closing_websockets(self) -> bool:
        # Only those told to close: one still to authenticate gets uvicorn's 1012 at once.
        return any(
            isinstance(c, WebSocketsSansIOProtocol) and c.close_sent
            for c in self.server_state.connections
        )

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                print(f"RealTimeChat is running at http://{host}:{port}", flush=True)


def _ws_protocol(close_timeout_s: float, closed: asyncio.Event) -> type[WebSocketsSansIOProtocol]:
    """uvicorn's WebSocket protocol, waiting `close_timeout_s` for a client's close reply.

    uvicorn fixes that wait at 10 s; a drain is bounded by it, so it follows our
    setting. `closed` is set each time a WebSocket's socket closes.
    """

    class Protocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = close_timeout_s

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            closed.set()

    return Protocol


def serve(settings: Settings) -> None:
    """Migrate, then run one node until it is told to stop."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings.otel_endpoint, "realtimechat")
    upgrade(settings)
    node = build(settings)
    app = create_app(node)
    websocket_closed = asyncio.Event()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws=_ws_protocol(settings.ws.close_timeout_s, websocket_closed),
        lifespan="on",
        log_level=settings.log_level,
        log_config=None,  # our structlog setup handles uvicorn's records too
        access_log=False,
        ws_ping_interval=settings.ws.heartbeat_ms / 1000,
        ws_ping_timeout=settings.ws.heartbeat_ms / 1000,
        timeout_graceful_shutdown=int(settings.drain_s),
        ws_max_size=settings.limits.max_request_bytes,
        # uvicorn believes X-Forwarded-For from loopback by default, so anyone on the
        # machine could pick their address (and rate budget): only from named proxies.
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies,
        # Chat frames are small: compressing each one for each listener costs more
        # CPU than the bytes it saves on the wire.
        ws_per_message_deflate=False,
    )
    _Server(config, node, settings, websocket_closed).run()
    shutdown_tracing()
