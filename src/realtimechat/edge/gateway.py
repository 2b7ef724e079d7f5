"""The WebSocket gateway: auth, ready, resume, send, typing, ack, ping, re-auth, drain.

Frames are JSON text. Whatever a client sends is answered with a frame no bigger
than it has to be (echoed ids are short scalars) and never with an exception: a
binary or malformed frame gets an error frame (a binary first frame, close 4400).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.errors import (
    ChatError,
    Forbidden,
    Overloaded,
    RateLimited,
    Unavailable,
)
from realtimechat.domain.models import Channel
from realtimechat.edge import frames
from realtimechat.edge.connection import Connection, Resync, Rewind
from realtimechat.edge.deps import Deps
from realtimechat.edge.hub import Hub, end_expired
from realtimechat.ids import new_id
from realtimechat.observability import metrics
from realtimechat.observability.logging import bind
from realtimechat.observability.tracing import tracer
from realtimechat.services.auth import Principal
from realtimechat_client import protocol

_FRAME_TYPES = frozenset({"send", "resume", "ping", "typing", "ack", "auth"})
log = logging.getLogger(__name__)

MAX_CURSORS = 5000
ECHOED = ("client_msg_id", "channel_id", "id")
MAX_MESSAGE_CHARS = 500


def parse_cursor(value: Any) -> tuple[int, str | None] | None:
    """A resume cursor: a bare seq, or {"seq": n, "epoch": "…"}; None if malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value, None) if value >= 0 else None
    if isinstance(value, dict):
        seq, epoch = value.get("seq"), value.get("epoch")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            return None
        if epoch is None or isinstance(epoch, str):
            return seq, epoch
    return None


class Gateway:
    """Serves /api/v1/ws for one node."""

    def __init__(self, deps: Deps, hub: Hub) -> None:
        self._deps = deps
        self._hub = hub
        self._ws = deps.settings.ws
        self.draining = False

    async def drain(self, timeout_s: float) -> None:
        """Tell every client to reconnect elsewhere, close with 1012, wait for the queues."""
        self.draining = True
        conns = list(self._hub.connections)
        frame = {"type": "going_away", "reconnect_after_ms": self._ws.reconnect_after_ms}
        for conn in conns:
            conn.send_frame(frame)
            conn.close_after_queue(protocol.CLOSE_GOING_AWAY, "server restarting")
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(c.wait_closed()) for c in conns], timeout=timeout_s
            )

    async def serve(self, ws: WebSocket) -> None:
        await ws.accept()
        if self.draining:
            await ws.send_text(
                frames.dumps(
                    {"type": "going_away", "reconnect_after_ms": self._ws.reconnect_after_ms}
                )
            )
            await ws.close(protocol.CLOSE_GOING_AWAY)
            return
        auth = await self._authenticate(ws)
        if auth is None:
            return
        principal, cursors = auth
        user_id = principal.user_id
        bind(user_id=user_id)
        conn = Connection(
            ws,
            user_id=user_id,
            session_id=new_id(),
            queue_size=self._ws.send_queue,
            replay_limit=self._ws.replay_limit,
            fetch=self._deps.messages.replay,
            close_timeout_s=self._ws.close_timeout_s,
            queue_bytes=self._ws.send_queue_bytes,
            principal=principal,
            reauth_grace_s=self._ws.reauth_grace_s,
        )
        self._hub.register(conn)
        sends: set[asyncio.Task[None]] = set()
        try:
            try:
                channels = await self._deps.channels.subscriptions(user_id)
            except ChatError as exc:
                await self._refuse(ws, exc.code, exc.detail, protocol.CLOSE_TRY_AGAIN)
                return
            # No await from here to the end of the resume: nothing can slip between
            # ready, the subscriptions and the replay. Ready goes out first, before
            # anything queued while the channels were read (a join, a heartbeat).
            conn.start(
                {
                    "type": "ready",
                    "session_id": conn.session_id,
                    "user_id": user_id,
                    "channels": [
                        {
                            "id": c.id,
                            "last_seq": c.last_seq,
                            "epoch": c.epoch,
                            "kind": c.kind,
                            "name": c.name,
                            "team_id": c.team_id,
                        }
                        for c in channels
                    ],
                    "heartbeat_ms": self._ws.heartbeat_ms,
                    "replay_limit": self._ws.replay_limit,
                    "expires_at": principal.expires_at,
                }
            )
            # Cursors in the auth frame set where each subscription starts, so a
            # resumed channel is replayed once, in order, before its live events.
            start = {c.id: c.last_seq for c in channels}
            plans = self._plan(conn, cursors, {c.id: c for c in channels}, "auth")
            for channel_id, (action, seq) in plans.items():
                if action == "rewind":
                    start[channel_id] = seq
            for c in channels:
                conn.epochs[c.id] = c.epoch
                self._hub.subscribe(conn, c.id, start[c.id], known_last=c.last_seq)
            for channel_id, (action, seq) in plans.items():
                if action == "resync":
                    conn.offer(Resync(channel_id, seq))
            await self._receive_loop(ws, conn, sends)
        except WebSocketDisconnect:
            pass
        finally:
            self._hub.unregister(conn)
            for task in sends:
                task.cancel()
            await conn.stop()

    async def _authenticate(self, ws: WebSocket) -> tuple[Principal, dict[str, Any]] | None:
        try:
            message = await asyncio.wait_for(ws.receive(), self._ws.auth_timeout_s)
        except TimeoutError:
            await self._refuse(
                ws, "auth_timeout", "no auth frame in time", protocol.CLOSE_AUTH_TIMEOUT
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
            await self._refuse(
                ws, "malformed_frame", "frames are JSON text, not binary", protocol.CLOSE_BAD_FRAME
            )
            return None
        frame = _loads(raw)
        if frame is None or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
            await self._refuse(
                ws, "auth_required", "the first frame must be auth", protocol.CLOSE_UNAUTHORIZED
            )
            return None
        try:
            principal = self._verify(frame["token"])
        except ChatError as exc:
            await self._refuse(ws, exc.code, exc.detail, protocol.CLOSE_UNAUTHORIZED)
            return None
        cursors = frame.get("cursors")
        return principal, cursors if isinstance(cursors, dict) else {}

    def _verify(self, token: str) -> Principal:
        """The principal of an access token (ChatError if invalid, expired or revoked)."""
        return self._deps.auth.authenticate(token)

    async def _refuse(self, ws: WebSocket, code: str, message: str, close_code: int) -> None:
        """An error frame, then close with `close_code` and the error's code as the reason."""
        with contextlib.suppress(Exception):
            await ws.send_text(frames.dumps({"type": "error", "code": code, "message": message}))
            await ws.close(close_code, code)

    async def _receive_loop(
        self, ws: WebSocket, conn: Connection, sends: set[asyncio.Task[None]]
    ) -> None:
        limiter = self._deps.limiter
        per_minute = self._deps.settings.limits.ws_frames_per_minute
        in_flight = asyncio.Semaphore(self._ws.max_inflight_sends)
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            if conn.closing:
                continue  # the close is under way: nothing more is done for this socket
            if conn.deadline < self._hub.now():
                # Past the token's expiry and grace: the sweep would close it within a
                # second; this frame is not served meanwhile.
                metrics.WS_REFUSED_FRAMES.labels("expired").inc()
                end_expired(conn)
                continue
            raw = message.get("text")
            if raw is None:
                metrics.WS_REFUSED_FRAMES.labels("binary").inc()
                conn.send_frame(_error("malformed_frame", "frames are JSON text, not binary"))
                continue
            frame = _loads(raw)
            if frame is None or not isinstance(frame.get("type"), str):
                metrics.WS_REFUSED_FRAMES.labels("malformed").inc()
                conn.send_frame(_error("malformed_frame", "frames are JSON objects with a type"))
                continue
            try:
                # Per user, so more sockets do not buy a bigger budget; per node, so a
                # frame costs no Redis round trip (a user on n nodes gets n budgets).
                await limiter.hit(f"ws:{conn.user_id}", per_minute, local=True)
            except RateLimited as exc:
                conn.send_frame(
                    _error(exc.code, exc.detail, frame, retry_after_ms=exc.retry_after_s * 1000)
                )
                continue
            kind = frame["type"]
            metrics.WS_FRAMES.labels("in", kind if kind in _FRAME_TYPES else "unknown").inc()
            oversize = _oversize(frame)
            if oversize is not None:
                # Refused whole, and answered without the offending value: an answer
                # that echoed it would cost the server what the frame cost the client.
                metrics.WS_REFUSED_FRAMES.labels("oversize_field").inc()
                conn.send_frame(
                    _error(
                        "validation_error",
                        f"{oversize} must be a number or a string of at most "
                        f"{protocol.MAX_ECHO_CHARS} characters",
                        frame,
                        field=oversize,
                    )
                )
                continue
            if kind == "send":
                await in_flight.acquire()
                task = asyncio.create_task(self._send(conn, frame, in_flight))
                sends.add(task)
                task.add_done_callback(sends.discard)
            elif kind == "resume":
                await self._on_resume(conn, frame)
            elif kind == "ping":
                conn.send_frame({"type": "pong", "id": frame.get("id")})
            elif kind == "typing":
                self._on_typing(conn, frame)
            elif kind == "ack":
                self._on_ack(conn, frame)
            elif kind == "auth":
                self._on_reauth(conn, frame)
            else:
                conn.send_frame(_error("unknown_frame_type", f"unknown frame type {kind!r}", frame))

    async def _send(self, conn: Connection, frame: dict[str, Any], slot: asyncio.Semaphore) -> None:
        try:
            channel_id, body = frame.get("channel_id"), frame.get("body", "")
            client_msg_id, attachments = frame.get("client_msg_id"), frame.get("attachments") or []
            if not (
                isinstance(channel_id, str)
                and isinstance(body, str)
                and isinstance(client_msg_id, str)
                and isinstance(attachments, list)
            ):
                conn.send_frame(
                    _error(
                        "validation_error",
                        "send needs channel_id, client_msg_id and body strings",
                        frame,
                    )
                )
                metrics.SENDS.labels("ws", "client_error").inc()
                return
            with tracer.start_as_current_span("ws send", attributes={"rtc.channel_id": channel_id}):
                msg, created = await self._deps.messages.send(
                    conn.user_id, channel_id, body, client_msg_id, attachments
                )
            metrics.SENDS.labels("ws", "ok").inc()
            conn.send_frame(
                {
                    "type": "send_ok",
                    "client_msg_id": client_msg_id,
                    "created": created,
                    "message": msg.to_json(),
                }
            )
        except ChatError as exc:
            server_side = isinstance(exc, Unavailable | Overloaded)
            metrics.SENDS.labels("ws", "server_error" if server_side else "client_error").inc()
            conn.send_frame(_error(exc.code, exc.detail, frame))
        except Exception:
            metrics.SENDS.labels("ws", "server_error").inc()
            log.exception("websocket send failed")
            conn.send_frame(_error("internal_error", "the error was logged", frame))
        finally:
            slot.release()

    def _on_reauth(self, conn: Connection, frame: dict[str, Any]) -> None:
        """A fresh token of the same user: the socket goes on under it (`auth_ok`).

        A refused token changes nothing: the socket keeps its authentication until that
        expires (and the grace passes).
        """
        token = frame.get("token")
        if not isinstance(token, str):
            conn.send_frame(_error("validation_error", "auth needs a token string", frame))
            return
        try:
            principal = self._verify(token)
            if principal.user_id != conn.user_id:
                raise Forbidden("the token is another user's; open a new connection for them")
        except ChatError as exc:
            metrics.WS_REAUTHS.labels("refused").inc()
            conn.send_frame(_error(exc.code, exc.detail, frame))
            return
        metrics.WS_REAUTHS.labels("ok").inc()
        self._hub.reauthenticate(conn, principal)
        conn.send_frame({"type": "auth_ok", "expires_at": principal.expires_at})

    async def _on_resume(self, conn: Connection, frame: dict[str, Any]) -> None:
        cursors = frame.get("cursors")
        if not isinstance(cursors, dict):
            conn.send_frame(_error("validation_error", "resume needs a cursors object", frame))
            return
        if len(cursors) > MAX_CURSORS:
            conn.send_frame(
                _error("validation_error", f"at most {MAX_CURSORS} cursors per resume", frame)
            )
            return
        try:
            channels = await self._deps.channels.member_channels(conn.user_id, list(cursors))
        except ChatError as exc:
            conn.send_frame(_error(exc.code, exc.detail, frame))
            return
        for channel_id, (action, seq) in self._plan(conn, cursors, channels, "resume").items():
            channel = channels[channel_id]
            conn.epochs[channel_id] = channel.epoch
            if channel_id not in conn.last_sent:
                start = seq if action == "rewind" else channel.last_seq
                self._hub.subscribe(conn, channel_id, start, known_last=channel.last_seq)
            elif action == "rewind":
                conn.offer(Rewind(channel_id, seq))
            if action == "resync":
                conn.offer(Resync(channel_id, seq))

    def _plan(
        self, conn: Connection, cursors: dict[str, Any], channels: dict[str, Channel], ref: str
    ) -> dict[str, tuple[str, int]]:
        """Per cursor: ("rewind", seq) to replay after seq, or ("resync", current seq).

        Unknown channels and malformed cursors are answered with error frames.
        """
        plans: dict[str, tuple[str, int]] = {}
        for channel_id, raw in cursors.items():
            if len(channel_id) > protocol.MAX_ECHO_CHARS:
                conn.send_frame(
                    _error(
                        "validation_error",
                        f"a channel id is at most {protocol.MAX_ECHO_CHARS} characters",
                        ref=ref,
                    )
                )
                continue
            channel = channels.get(channel_id)
            if channel is None:
                conn.send_frame(
                    _error("not_found", "channel not found", channel_id=channel_id, ref=ref)
                )
                continue
            cursor = parse_cursor(raw)
            if cursor is None:
                conn.send_frame(
                    _error(
                        "validation_error",
                        "a cursor is a seq or {seq, epoch}",
                        channel_id=channel_id,
                        ref=ref,
                    )
                )
                continue
            seq, epoch = cursor
            current = max(channel.last_seq, self._hub.published_seq.get(channel_id, 0))
            if (
                (epoch is not None and epoch != channel.epoch)
                or seq > current
                or current - seq > self._ws.replay_limit
            ):
                plans[channel_id] = ("resync", current)
            else:
                plans[channel_id] = ("rewind", seq)
        return plans

    def _on_typing(self, conn: Connection, frame: dict[str, Any]) -> None:
        channel_id = frame.get("channel_id")
        if not isinstance(channel_id, str) or channel_id not in conn.last_sent:
            conn.send_frame(_error("not_found", "channel not found", frame))
            return
        self._deps.bus.publish_ephemeral(Ephemeral(channel_id, conn.user_id, "typing"))

    def _on_ack(self, conn: Connection, frame: dict[str, Any]) -> None:
        channel_id, seq = frame.get("channel_id"), frame.get("seq")
        if not isinstance(channel_id, str) or channel_id not in conn.last_sent:
            conn.send_frame(_error("not_found", "channel not found", frame))
        elif not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            conn.send_frame(_error("validation_error", "ack needs a seq", frame))
        else:
            conn.acked[channel_id] = max(conn.acked.get(channel_id, 0), seq)


def _loads(raw: str) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _echoable(value: Any) -> bool:
    """A value small enough to echo: a JSON scalar, a string of at most MAX_ECHO_CHARS."""
    if isinstance(value, str):
        return len(value) <= protocol.MAX_ECHO_CHARS
    return value is None or isinstance(value, int | float)  # bool is an int


def _oversize(frame: dict[str, Any]) -> str | None:
    """The first echoed field of the frame (its type included) that cannot be echoed."""
    for key in ("type", *ECHOED):
        if key in frame and not _echoable(frame[key]):
            return key
    return None


def _error(
    code: str, message: str, frame: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    """An error frame; with `frame`, its echoable ids and its type (as `ref`)."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    out: dict[str, Any] = {"type": "error", "code": code, "message": message, **extra}
    if frame is not None:
        for key in ECHOED:
            if key in frame and _echoable(frame[key]):
                out[key] = frame[key]
        kind = frame.get("type")
        out["ref"] = kind if _echoable(kind) else None
    return out
