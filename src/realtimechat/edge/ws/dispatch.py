"""The receive loop of a session, and its table from frame type to handler.

Every text frame is checked in one order: JSON object with a string type (else
`malformed_frame`), the user's frame budget (`rate_limited`), the echo rule (an id too
big to echo is refused whole: `validation_error` naming it, without its value), then
its protocol model (`unknown_frame_type`, or `validation_error` naming the `field`).
A valid frame goes to its line in `FRAMES`: a session handler (handlers.py), run in
order, or a command (edge/commands.py), run concurrently up to `max_inflight_sends`
and answered when it is done. Whatever a frame does wrong is answered with an error
frame and the session goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError
from starlette.websockets import WebSocket

from realtimechat.domain.errors import ChatError, RateLimited
from realtimechat.edge import commands, errors, frames
from realtimechat.edge.commands import Command, SendMessage, Sent
from realtimechat.edge.connection import Connection
from realtimechat.edge.hub import end_expired
from realtimechat.edge.ws import handlers
from realtimechat.edge.ws.context import Context
from realtimechat.observability import metrics
from realtimechat_client import protocol

log = logging.getLogger(__name__)

F = TypeVar("F")
R = TypeVar("R")
Raw = Mapping[str, object]
Handler = Callable[[Context, Connection, Any, Raw], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CommandFrame(Generic[F, R]):
    """A frame that is a command: the command it builds, and the answer to its result."""

    command: type[Command[R]]
    build: Callable[[F], Command[R]]
    answer: Callable[[F, R], dict[str, object]]


def _send(frame: protocol.Send) -> SendMessage:
    return SendMessage(
        frame.channel_id, frame.body, frame.client_msg_id, tuple(frame.attachments or ())
    )


def _sent(frame: protocol.Send, sent: Sent) -> dict[str, object]:
    return frames.send_ok(frame.client_msg_id, sent.created, sent.message)


FRAMES: dict[str, Handler | CommandFrame[Any, Any]] = {
    "auth": handlers.on_auth,
    "resume": handlers.on_resume,
    "ping": handlers.on_ping,
    "typing": handlers.on_typing,
    "send": CommandFrame(SendMessage, _send, _sent),
}


async def receive_loop(ws: WebSocket, conn: Connection, ctx: Context) -> None:
    """Serve the connection's frames until the client goes away."""
    in_flight = asyncio.Semaphore(ctx.settings.max_inflight_sends)
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if conn.closing:
                continue  # the close is under way: nothing more is done for this socket
            if conn.deadline < ctx.hub.now():
                # Past the token's expiry and grace: the sweep would close it within a
                # second; this frame is not served meanwhile.
                metrics.WS_REFUSED_FRAMES.labels("expired").inc()
                end_expired(conn)
                continue
            text = message.get("text")
            if text is None:
                metrics.WS_REFUSED_FRAMES.labels("binary").inc()
                conn.send_frame(frames.error("malformed_frame", "frames are JSON text, not binary"))
                continue
            raw = _loads(text)
            if raw is None or not isinstance(raw.get("type"), str):
                metrics.WS_REFUSED_FRAMES.labels("malformed").inc()
                conn.send_frame(
                    frames.error("malformed_frame", "frames are JSON objects with a type")
                )
                continue
            try:
                # Per user, so more sockets do not buy a bigger budget; per node, so a
                # frame costs no Redis round trip (a user on n nodes gets n budgets).
                await ctx.hit_frame(f"ws:{conn.user_id}")
            except RateLimited as exc:
                conn.send_frame(errors.error_frame(exc, raw))
                continue
            kind = str(raw["type"])
            entry = FRAMES.get(kind)
            metrics.WS_FRAMES.labels("in", kind if entry is not None else "unknown").inc()
            oversize = frames.oversize(raw)
            if oversize is not None:
                # Refused whole, and answered without the offending value: an answer
                # that echoed it would cost the server what the frame cost the client.
                metrics.WS_REFUSED_FRAMES.labels("oversize_field").inc()
                conn.send_frame(
                    frames.error(
                        "validation_error",
                        f"{oversize} must be a number or a string of at most "
                        f"{protocol.MAX_ECHO_CHARS} characters",
                        raw,
                        field=oversize,
                    )
                )
                continue
            try:
                frame = protocol.CLIENT_FRAME.validate_python(raw)
            except ValidationError as exc:
                if isinstance(entry, CommandFrame):
                    commands.refused(entry.command, "ws")
                conn.send_frame(errors.invalid_frame_error(exc, raw))
                continue
            if isinstance(entry, CommandFrame):
                await in_flight.acquire()
                task = asyncio.create_task(_command(ctx, conn, entry, frame, raw, in_flight))
                running.add(task)
                task.add_done_callback(running.discard)
            elif entry is not None:
                try:
                    await entry(ctx, conn, frame, raw)
                except ChatError as exc:
                    conn.send_frame(errors.error_frame(exc, raw))
    finally:
        for task in running:
            task.cancel()


async def _command(
    ctx: Context,
    conn: Connection,
    entry: CommandFrame[F, R],
    frame: F,
    raw: Raw,
    slot: asyncio.Semaphore,
) -> None:
    try:
        result = await commands.run(
            entry.build(frame), ctx.services, actor=conn.user_id, transport="ws"
        )
        conn.send_frame(entry.answer(frame, result))
    except ChatError as exc:
        conn.send_frame(errors.error_frame(exc, raw))
    except Exception:
        log.exception("websocket %s failed", raw.get("type"))
        conn.send_frame(errors.internal_error_frame(raw))
    finally:
        slot.release()


def _loads(text: str) -> dict[str, object] | None:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
