"""The WebSocket gateway of one node: serve a session, drain them all.

A session is the handshake (edge/ws/handshake.py: auth, ready, where each channel
starts), then the receive loop (edge/ws/dispatch.py) until the client goes away. Frames
are JSON text; whatever a client sends is answered with a frame no bigger than it has
to be and never with an exception (a binary first frame: close 4400).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.errors import ChatError
from realtimechat.domain.models import Channel
from realtimechat.edge import errors, frames
from realtimechat.edge.commands import Services
from realtimechat.edge.connection import Connection, FetchEvents
from realtimechat.edge.hub import Hub
from realtimechat.edge.ws import dispatch, handshake
from realtimechat.edge.ws.context import Context, MemberChannels, Verify
from realtimechat.ids import new_id
from realtimechat.observability.logging import bind
from realtimechat.resilience.ratelimit import RateLimiter
from realtimechat.settings import WebSocketSettings
from realtimechat_client import protocol

Subscriptions = Callable[[str], Awaitable[list[Channel]]]


class Gateway:
    """Serves /api/v1/ws for one node."""

    def __init__(
        self,
        *,
        hub: Hub,
        settings: WebSocketSettings,
        verify: Verify,
        subscriptions: Subscriptions,
        member_channels: MemberChannels,
        replay: FetchEvents,
        publish_ephemeral: Callable[[Ephemeral], None],
        limiter: RateLimiter,
        frames_per_minute: int,
        services: Services,
    ) -> None:
        self._hub = hub
        self._ws = settings
        self._verify = verify
        self._subscriptions = subscriptions
        self._replay = replay

        async def hit_frame(key: str) -> object:
            return await limiter.hit(key, frames_per_minute, local=True)

        self._ctx = Context(
            hub=hub,
            settings=settings,
            verify=verify,
            member_channels=member_channels,
            publish_ephemeral=publish_ephemeral,
            hit_frame=hit_frame,
            services=services,
        )
        self.draining = False

    async def drain(self, timeout_s: float) -> None:
        """Tell every client to reconnect elsewhere, close with 1012, wait for the queues."""
        self.draining = True
        conns = list(self._hub.connections)
        frame = frames.going_away(self._ws.reconnect_after_ms)
        for conn in conns:
            conn.send_frame(frame)
            conn.close_after_queue(protocol.CLOSE_GOING_AWAY, "server restarting")
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=timeout_s
            )

    async def serve(self, ws: WebSocket) -> None:
        """One session, from the accept to the client's leaving."""
        await ws.accept()
        if self.draining:
            await ws.send_text(frames.dumps(frames.going_away(self._ws.reconnect_after_ms)))
            await ws.close(protocol.CLOSE_GOING_AWAY)
            return
        hello = await handshake.authenticate(
            ws, verify=self._verify, timeout_s=self._ws.auth_timeout_s
        )
        if hello is None:
            return
        principal = hello.principal
        bind(user_id=principal.user_id)
        conn = Connection(
            ws,
            user_id=principal.user_id,
            session_id=new_id(),
            queue_size=self._ws.send_queue,
            replay_limit=self._ws.replay_limit,
            fetch=self._replay,
            close_timeout_s=self._ws.close_timeout_s,
            queue_bytes=self._ws.send_queue_bytes,
            principal=principal,
            reauth_grace_s=self._ws.reauth_grace_s,
        )
        # Reachable by user (for joins) before its channels are read.
        self._hub.register(conn)
        try:
            try:
                channels = await self._subscriptions(principal.user_id)
            except ChatError as exc:
                await handshake.refuse(ws, errors.error_frame(exc), errors.close_code_of(exc))
                return
            handshake.open_session(conn, self._hub, channels, hello.cursors, self._ws)
            await dispatch.receive_loop(ws, conn, self._ctx)
        except WebSocketDisconnect:
            pass
        finally:
            self._hub.unregister(conn)
            await conn.stop()
