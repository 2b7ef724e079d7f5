"""The connection loop of a live session: one WebSocket at a time, reconnected for ever.

- **Connect and authenticate.** Each connection sends an `auth` frame with a fresh access
  token and the resume cursors the listener gives; `ready` makes it current.
- **Reconnect with backoff.** After a drop: exponential backoff with full jitter (capped);
  after `going_away` the server's `reconnect_after_ms` (plus up to half as much again, to
  spread the herd); after close 1013 (it fell behind) at once; after 4401 with a refreshed
  token. A close 4401 `session_revoked` ends the session: reconnecting could not help.
- **Heartbeat watchdog.** No frame for `heartbeat_misses` heartbeats: the connection is
  dead and is aborted.
- **Re-auth on the open socket.** At 80 % of the access token's life (and when the server
  answers `token_expired`) a fresh token goes out in an `auth` frame, so the server does not
  close the socket when the old one expires.

Frames about the connection itself (`ready`'s expiry and heartbeat, `auth_ok`,
`going_away`, auth errors) are handled here; every other frame goes to the `FrameListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from realtimechat_client import codec
from realtimechat_client.backoff import Backoff
from realtimechat_client.errors import ChatAPIError
from realtimechat_client.live.lifetime import Lifetime, retrieve, wait_any
from realtimechat_client.live.stats import LiveStats
from realtimechat_client.options import ClientOptions
from realtimechat_client.protocol import CLOSE_TRY_AGAIN, CLOSE_UNAUTHORIZED
from realtimechat_client.tokens import jwt_times
from realtimechat_client.transport import Transport

__all__ = ["Conn", "ConnectionLoop", "Frame", "FrameListener"]

log = logging.getLogger("realtimechat_client.live")

Frame = dict[str, Any]


class FrameListener(Protocol):
    """Who takes the frames that are not about the connection itself."""

    def resume_cursors(self) -> dict[str, Any]:
        """The cursors a new connection's `auth` frame carries."""
        ...

    def on_ready(self, frame: Frame) -> Frame | None:
        """A connection's `ready`; a frame to send back at once (a `resume`), or None."""
        ...

    def on_frame(self, frame: Frame) -> None:
        """Any other frame (`event`, `send_ok`, `resync`, `error`, …)."""
        ...


@dataclass
class Conn:
    """One WebSocket connection and what is known about it."""

    ws: ClientConnection
    generation: int
    token: str = ""  # the access token the server holds for this socket
    expires_at: float | None = None  # its expiry (epoch seconds), from ready / auth_ok
    sent_token: str = ""  # the token of the auth frame awaiting its answer
    answered: asyncio.Event = field(default_factory=asyncio.Event)  # auth_ok or its error
    renew_now: asyncio.Event = field(default_factory=asyncio.Event)
    rescheduled: asyncio.Event = field(default_factory=asyncio.Event)  # expires_at changed
    revoked: bool = False  # an error frame said session_revoked
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    going_away_ms: int | None = None
    close_code: int | None = None
    close_reason: str = ""
    dead: bool = False

    @property
    def usable(self) -> bool:
        """Past `ready` and not lost: frames may be sent on it."""
        return self.ready and not self.lost.is_set()


class ConnectionLoop:
    """Keeps one authenticated connection up until the session ends."""

    def __init__(
        self,
        transport: Transport,
        options: ClientOptions,
        stats: LiveStats,
        lifetime: Lifetime,
        listener: FrameListener,
        backoff: Backoff,
    ) -> None:
        self._transport = transport
        self._opts = options
        self._stats = stats
        self._lifetime = lifetime
        self._listener = listener
        self._backoff = backoff
        self.current: Conn | None = None  # the connection past `ready`, if any
        self.connected = asyncio.Event()  # set while `current` is
        self.heartbeat_ms: int | None = None
        self._generation = 0
        self._chores: set[asyncio.Task[None]] = set()

    # -- for the other parts of the session ------------------------------------------------
    def send_soon(self, frame: Frame) -> None:
        """Send `frame` on the current connection, if there is one (else the next resumes)."""
        conn = self.current
        if conn is None or not conn.ready:
            return
        text = codec.dumps(frame)

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await conn.ws.send(text)

        task = asyncio.create_task(send())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Background sends still running (to cancel when the session closes)."""
        return list(self._chores)

    async def close(self) -> None:
        """Close the current connection (briefly: the session is ending)."""
        conn = self.current
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), 1)

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, serve, reconnect until the session closes; raise what ends it."""
        attempt = 0
        unauthorized_in_a_row = 0
        slow_in_a_row = 0
        stats, life = self._stats, self._lifetime
        while not life.closed:
            conn: Conn | None = None
            token = ""
            try:
                token = await self._transport.fresh_token()
                conn = await self._connect(token)
                await self._serve(conn)
            except ChatAPIError as exc:
                if exc.status in (401, 403):
                    raise  # cannot log in any more: the session is over
                log.debug("live session: %s", exc)
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.debug("live session connect failed: %r", exc)
            finally:
                if conn is not None:
                    self._lost(conn)
            if life.closed:
                return
            if conn is None or not conn.ready:
                stats.connect_failures += 1
            code = conn.close_code if conn is not None else None
            if (
                code == CLOSE_UNAUTHORIZED
                and conn is not None
                and (conn.revoked or conn.close_reason == "session_revoked")
            ):
                raise ChatAPIError(401, "session_revoked", "this login was signed out or revoked")
            if code == CLOSE_UNAUTHORIZED:
                unauthorized_in_a_row += 1
                if unauthorized_in_a_row > 2:
                    raise ChatAPIError(401, "unauthorized", "the server refuses our tokens")
                try:
                    await self._transport.renewed_token(token)
                    stats.auth_refreshes += 1
                    continue
                except ChatAPIError as exc:
                    if not exc.transient:
                        raise
            unauthorized_in_a_row = 0
            if conn is not None and conn.ready:
                attempt = 0
            if conn is not None and conn.going_away_ms is not None:
                wait_s = conn.going_away_ms / 1000
                # Honour the server's delay; spread the herd over up to half as much again.
                delay = wait_s + Backoff(wait_s / 2, wait_s / 2, rng=self._transport.rng).delay(0)
                attempt = 0
            elif code == CLOSE_TRY_AGAIN and slow_in_a_row == 0:
                slow_in_a_row += 1
                stats.slow_consumer_closes += 1
                delay = 0.0  # fell behind: resume at once from our cursors
            else:
                if code == CLOSE_TRY_AGAIN:
                    stats.slow_consumer_closes += 1
                else:
                    slow_in_a_row = 0
                delay = self._backoff.delay(attempt)
                attempt += 1
            if delay > 0:
                await wait_any(life.ended.wait(), limit_s=delay)

    async def _connect(self, token: str) -> Conn:
        ws = await websockets.connect(
            self._transport.ws_url,
            open_timeout=self._opts.ws_open_timeout_s,
            max_size=16 * 1024 * 1024,
            max_queue=None,
            close_timeout=1,
        )
        self._generation += 1
        conn = Conn(ws, self._generation, token=token)
        auth: Frame = {"type": "auth", "token": token}
        cursors = self._listener.resume_cursors()
        if cursors:
            auth["cursors"] = cursors
        try:
            await ws.send(codec.dumps(auth))
        except BaseException:
            ws.transport.abort()
            raise
        return conn

    def _silence_limit(self, conn: Conn) -> float | None:
        """How long the connection may stay silent before it counts as dead."""
        if not conn.ready:  # auth is answered within the server's own auth timeout
            return max(self._opts.ws_open_timeout_s, 10.0)
        if self.heartbeat_ms:
            return self.heartbeat_ms / 1000 * self._opts.heartbeat_misses
        return None  # a server without heartbeats: trust TCP and pings

    async def _watch(self, conn: Conn, last_rx: list[float]) -> None:
        """Abort a connection that stays silent past its limit (checked a few times per limit).

        One watchdog per connection instead of a timeout per frame: a frame then costs
        one clock read.
        """
        loop = asyncio.get_running_loop()
        while True:
            limit = self._silence_limit(conn)
            await asyncio.sleep((limit or 10.0) / 4)
            if limit is not None and loop.time() - last_rx[0] > limit:
                conn.dead = True
                self._stats.dead_connections += 1
                conn.ws.transport.abort()
                return

    async def _serve(self, conn: Conn) -> None:
        """Read frames until the connection ends."""
        ws = conn.ws
        loop = asyncio.get_running_loop()
        last_rx = [loop.time()]
        watchdog = asyncio.create_task(self._watch(conn, last_rx))
        renewer = asyncio.create_task(self._keep_authenticated(conn))
        try:
            while True:
                raw = await ws.recv()
                last_rx[0] = loop.time()
                try:
                    frame = codec.loads(raw)
                    follow_up = self._on_frame(conn, frame) if isinstance(frame, dict) else None
                except (KeyError, TypeError, ValueError) as exc:  # DecodeError is a ValueError
                    log.warning("live session: cannot handle frame %.200r: %r", raw, exc)
                    continue
                if follow_up is not None:
                    await ws.send(codec.dumps(follow_up))
        except ConnectionClosed as exc:
            conn.close_code = exc.rcvd.code if exc.rcvd is not None else None
            conn.close_reason = exc.rcvd.reason if exc.rcvd is not None else ""
        finally:
            watchdog.cancel()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer

    async def _keep_authenticated(self, conn: Conn) -> None:
        """Send the socket a fresh token before its own expires (80 % into its life).

        A refresh that cannot succeed (the login is over) stops this: the server then
        closes the socket, and the reconnect says why.
        """
        attempt = 0
        life = self._lifetime
        while True:
            conn.rescheduled.clear()
            # Nothing to schedule until `ready` tells the expiry (or the server asks).
            due = None if conn.expires_at is None else self._renew_in(conn)
            await wait_any(
                conn.lost.wait(),
                life.ended.wait(),
                conn.renew_now.wait(),
                conn.rescheduled.wait(),
                limit_s=due,
            )
            if conn.lost.is_set() or life.closed:
                return
            if not conn.renew_now.is_set() and (conn.rescheduled.is_set() or due is None):
                continue  # a new expiry: schedule again
            conn.renew_now.clear()
            # Shielded: a refresh cut off after the server rotated the refresh token
            # would leave us the old one, whose reuse revokes the whole login.
            refresh = asyncio.ensure_future(self._transport.renewed_token(conn.token))
            refresh.add_done_callback(retrieve)
            try:
                token = await asyncio.shield(refresh)
            except ChatAPIError as exc:
                if not exc.transient:
                    log.info("live session: cannot renew the token: %s", exc)
                    return
                await wait_any(conn.lost.wait(), limit_s=self._backoff.delay(attempt))
                attempt += 1
                conn.renew_now.set()
                continue
            conn.answered.clear()
            conn.sent_token = token
            try:
                await conn.ws.send(codec.dumps({"type": "auth", "token": token}))
            except (ConnectionClosed, OSError):
                return
            await wait_any(
                conn.answered.wait(), conn.lost.wait(), limit_s=self._opts.ws_send_timeout_s
            )
            if conn.token == token:
                attempt = 0
            elif not conn.lost.is_set():  # refused or unanswered: again, backing off
                await wait_any(conn.lost.wait(), limit_s=self._backoff.delay(attempt))
                attempt += 1
                conn.renew_now.set()

    def _renew_in(self, conn: Conn) -> float:
        """Seconds until the socket's token is to be renewed: at 80 % of its life."""
        assert conn.expires_at is not None
        left = conn.expires_at - time.time()
        lifetime, _ = jwt_times(conn.token)
        if lifetime is None or lifetime <= 0:
            lifetime = max(left, 1.0)
        # Never sooner than a tenth of a lifetime: with a clock far off the server's,
        # the session must not refresh in a loop (a refused token is renewed at once).
        return max(left - 0.2 * lifetime, 0.1 * lifetime)

    def _lost(self, conn: Conn) -> None:
        if self.current is conn:
            self.current = None
            self.connected.clear()
        if conn.ready:
            self._stats.disconnects += 1
        conn.lost.set()
        with contextlib.suppress(Exception):
            conn.ws.transport.abort()

    # -- frames --------------------------------------------------------------------------------
    def _on_frame(self, conn: Conn, frame: Frame) -> Frame | None:
        kind = frame.get("type")
        if kind == "event" or kind == "send_ok" or kind == "resync":
            self._listener.on_frame(frame)
        elif kind == "ready":
            return self._on_ready(conn, frame)
        elif kind == "error":
            self._on_error(conn, frame)
        elif kind == "auth_ok":
            expires_at = frame.get("expires_at")
            if isinstance(expires_at, int | float) and conn.sent_token:
                conn.token, conn.expires_at = conn.sent_token, float(expires_at)
                conn.rescheduled.set()
                self._stats.reauths += 1
            conn.answered.set()
        elif kind == "going_away":
            ms = frame.get("reconnect_after_ms")
            conn.going_away_ms = ms if isinstance(ms, int) and ms >= 0 else 1000
            self._stats.going_away += 1
            self._stats.last_going_away_at = time.monotonic()
            self._stats.last_going_away_ms = conn.going_away_ms
        # heartbeat, pong, typing: nothing to do (any frame keeps the connection alive)
        return None

    def _on_ready(self, conn: Conn, frame: Frame) -> Frame | None:
        follow_up = self._listener.on_ready(frame)
        expires_at = frame.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at > 0:
            conn.expires_at = float(expires_at)
            conn.rescheduled.set()
        hb = frame.get("heartbeat_ms")
        self.heartbeat_ms = hb if isinstance(hb, int) and hb > 0 else None
        conn.ready = True
        self.current = conn
        self.connected.set()
        self._stats.connects += 1
        self._stats.ready_at.append(time.monotonic())
        return follow_up

    def _on_error(self, conn: Conn, frame: Frame) -> None:
        ref = frame.get("ref")
        code = frame.get("code")
        if code == "session_revoked":
            conn.revoked = True  # the close that follows ends the session
        if ref == "auth" and conn.ready:
            conn.answered.set()  # our re-auth was refused; the renewer tries again
            if code == "token_expired":
                conn.renew_now.set()
            return
        if code == "token_expired" and conn.ready:
            conn.renew_now.set()
        self._listener.on_frame(frame)
