"""The start of a session: the auth frame, the `ready` frame, the channels' starts.

The first frame must be `auth` (else close 4401), within `auth_timeout_s` (else 4408),
and text (else 4400). Its cursors set where each subscription starts, so a resumed
channel is replayed once, in order, before its live events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtimechat.domain.errors import ChatError
from realtimechat.domain.models import Channel
from realtimechat.edge import errors, frames
from realtimechat.edge.connection import Connection, Resync
from realtimechat.edge.hub import Hub
from realtimechat.edge.ws import resume
from realtimechat.edge.ws.context import Verify
from realtimechat.observability import metrics
from realtimechat.services.auth import Principal
from realtimechat.settings import WebSocketSettings
from realtimechat_client import protocol


@dataclass(frozen=True, slots=True)
class Hello:
    """An authenticated first frame."""

    principal: Principal
    cursors: Mapping[str, object]


async def authenticate(ws: WebSocket, *, verify: Verify, timeout_s: float) -> Hello | None:
    """The principal and cursors of the first frame; None once the socket is refused."""
    try:
        message = await asyncio.wait_for(ws.receive(), timeout_s)
    except TimeoutError:
        await refuse(
            ws, frames.error("auth_timeout", "no auth frame in time"), protocol.CLOSE_AUTH_TIMEOUT
        )
        return None
    except (WebSocketDisconnect, RuntimeError, KeyError):
        return None
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text")
    if raw is None:
        metrics.WS_REFUSED_FRAMES.labels("binary").inc()
        metrics.WS_CLOSES.labels("bad_frame").inc()
        await refuse(
            ws,
            frames.error("malformed_frame", "frames are JSON text, not binary"),
            protocol.CLOSE_BAD_FRAME,
        )
        return None
    frame = _auth_frame(raw)
    if frame is None:
        await refuse(
            ws,
            frames.error("auth_required", "the first frame must be auth"),
            protocol.CLOSE_UNAUTHORIZED,
        )
        return None
    try:
        principal = verify(frame.token)
    except ChatError as exc:
        await refuse(ws, errors.error_frame(exc), errors.close_code_of(exc))
        return None
    return Hello(principal, frame.cursors)


def _auth_frame(raw: str) -> protocol.Auth | None:
    try:
        value = orjson.loads(raw)
        frame = protocol.CLIENT_FRAME.validate_python(value)
    except (orjson.JSONDecodeError, ValidationError):
        return None
    return frame if isinstance(frame, protocol.Auth) else None


async def refuse(ws: WebSocket, frame: dict[str, object], close_code: int) -> None:
    """An error frame, then close with `close_code` and the error's code as the reason."""
    with contextlib.suppress(Exception):
        await ws.send_text(frames.dumps(frame))
        await ws.close(close_code, str(frame["code"]))


def open_session(
    conn: Connection,
    hub: Hub,
    channels: list[Channel],
    cursors: Mapping[str, object],
    settings: WebSocketSettings,
) -> None:
    """Send `ready`, subscribe the connection to its channels, replay what the cursors ask.

    Nothing here awaits: nothing can slip between ready, the subscriptions and the
    replay. Ready goes out first, before anything queued while the channels were read
    (a join, a heartbeat).
    """
    conn.start(
        frames.ready(
            session_id=conn.session_id,
            user_id=conn.user_id,
            channels=channels,
            heartbeat_ms=settings.heartbeat_ms,
            replay_limit=settings.replay_limit,
            expires_at=conn.principal.expires_at,
        )
    )
    plan = resume.plan(
        cursors,
        {c.id: c for c in channels},
        published_seq=hub.published_seq,
        replay_limit=settings.replay_limit,
        ref="auth",
    )
    for error in plan.errors:
        conn.send_frame(error)
    for c in channels:
        step = plan.steps.get(c.id)
        start = step.seq if step is not None and step.action == "rewind" else c.last_seq
        hub.subscribe(conn, c.id, start, known_last=c.last_seq)
    for channel_id, step in plan.steps.items():
        if step.action == "resync":
            conn.offer(Resync(channel_id, step.seq))
