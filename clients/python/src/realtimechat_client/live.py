"""A live session: every channel's events exactly once, in seq order, whatever the network does.

```python
async with client.live(cursor_store=FileCursorStore("cursors.json")) as live:
    await live.send(channel_id, "hello")           # idempotent, retried until acknowledged
    async for event in live.events():              # {channel_id, seq, event, data, created_at}
        ...
```

How it keeps the promise:

- **One connection at a time, reconnected for ever.** After a drop the session reconnects
  with exponential backoff and full jitter (capped); after `going_away` it waits the
  server's `reconnect_after_ms`; after close 1013 (it fell behind) it resumes at once; after
  4401 it refreshes the access token first. No frame for `heartbeat_misses` heartbeats
  means the connection is dead.
- **Tokens are renewed on the open socket.** At 80 % of the access token's life (and when
  the server answers `token_expired`) the session refreshes the token and sends it in an
  `auth` frame, so the server does not close the socket when the old one expires. A close
  4401 `session_revoked` (the login was signed out or revoked) ends the session with
  ChatAPIError `session_revoked`: reconnecting could not help.
- **Resume from cursors.** Every (re)connect sends, in the `auth` frame, the last seq of each
  channel it has taken in and the channel's epoch; the server replays what was missed, or
  answers `resync`, and the session then pages `GET /channels/{id}/events` itself.
- **Reorder, dedupe, backfill.** Everything (live, replayed, paged) goes through one
  `ChannelBuffer` per channel, which drops what was seen by `(channel_id, seq)` and holds
  back what comes after a hole. A hole still open after `gap_grace_s` is backfilled over
  REST.
- **Epochs.** When a channel's epoch changes (its history was restored or rewritten), the
  channel continues from `min(our seq, the channel's last seq)` in the new epoch: seqs that
  both histories may share are not delivered twice, and nothing new is skipped.
- **Channels come and go.** A channel first seen through an event (`member.joined` or
  `channel.created` that adds us) starts just before that event. After our own
  `member.left` the channel is no longer followed until we join it again, except when
  the connection's `ready` says we are a member with later events (removed and added back
  while away): then the session asks the server to go on past that leave.
- **Tails are checked.** Every `tail_check_s` the channels' `last_seq`s are compared with
  what came in (one `GET /channels`), and a send's answer tells its seq: events that exist
  but never arrived live are backfilled, so a lost publication cannot hide at the end of a
  quiet channel.
- **Cursors are saved for delivered events only**: a channel's cursor in the store moves
  when one of its events is handed to the application (returned by `next_event()`).
- **Sends never duplicate.** `send()` fixes a `client_msg_id` and sends it over the
  WebSocket while connected, over `POST /api/v1/messages` while not, again and again with
  the same id, until a `send_ok`, 201 or 200 answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import orjson
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, WebSocketException

from realtimechat_client.client import ChatAPIError, StartFrom, _jwt_times, new_client_msg_id
from realtimechat_client.cursors import CursorStore, MemoryCursorStore
from realtimechat_client.ordering import BufferOverflow, ChannelBuffer
from realtimechat_client.protocol import (
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHORIZED,
)

if TYPE_CHECKING:
    from realtimechat_client.client import ChatClient

__all__ = ["LiveSession", "LiveStats"]

log = logging.getLogger(__name__)

Event = dict[str, Any]
JOIN_EVENTS = ("member.joined", "channel.created")


@dataclass
class LiveStats:
    """Counters of what the session went through (for tests, metrics and curiosity)."""

    connects: int = 0  # connections that reached `ready`
    connect_failures: int = 0  # attempts that never reached `ready`
    disconnects: int = 0
    going_away: int = 0
    slow_consumer_closes: int = 0  # close 1013
    auth_refreshes: int = 0  # close 4401 answered by refreshing the token
    reauths: int = 0  # fresh tokens the server took on an open socket (auth_ok)
    dead_connections: int = 0  # no frame within heartbeat_misses heartbeats
    resyncs: int = 0  # `resync` frames (and buffer overflows) answered by paging
    gap_backfills: int = 0  # holes filled over REST
    pages_fetched: int = 0
    epoch_changes: int = 0
    events_received: int = 0  # event frames and paged events taken in (duplicates included)
    events_delivered: int = 0  # handed to the application (through next_event)
    sends_ws: int = 0  # send frames written
    sends_rest: int = 0  # REST send attempts
    last_going_away_at: float | None = None  # monotonic time of the last going_away
    last_going_away_ms: int | None = None
    ready_at: list[float] = field(default_factory=list)  # monotonic time of each ready


@dataclass
class _Conn:
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


@dataclass
class _PendingSend:
    channel_id: str
    body: str
    attachments: list[Any] | None
    future: asyncio.Future[Event]
    task: asyncio.Task[Event] | None = None


class _Stop:
    """Queued when the session ends: wakes every reader of the event queue."""


_STOP = _Stop()


class LiveSession:
    """The WebSocket event stream of one user, made reliable. Use with `async with`."""

    def __init__(
        self,
        client: ChatClient,
        cursor_store: CursorStore | None = None,
        *,
        start_from: StartFrom | None = None,
    ) -> None:
        self._client = client
        self._opts = client.options
        self.store: CursorStore = cursor_store if cursor_store is not None else MemoryCursorStore()
        self.start_from: StartFrom = start_from or self._opts.start_from
        self.user_id: str | None = None
        self.channels: dict[str, dict[str, Any]] = {}  # from ready, plus channels joined since
        self.stats = LiveStats()
        self.heartbeat_ms: int | None = None
        self._buffers: dict[str, ChannelBuffer[Event]] = {}
        self._epochs: dict[str, str | None] = {}
        self._left: set[str] = set()  # channels we are no longer a member of
        self._out: asyncio.Queue[tuple[Event, str | None] | _Stop] = asyncio.Queue()
        self._conn: _Conn | None = None
        self._generation = 0
        self._connected = asyncio.Event()
        self._closed_evt = asyncio.Event()
        self._pending: dict[str, _PendingSend] = {}
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self._backfill_again: set[str] = set()
        self._gap_timers: dict[str, asyncio.TimerHandle] = {}
        self._known_last: dict[str, int] = {}  # highest seq known to exist, per channel
        self._ready_last: dict[str, int] = {}  # last_seq per channel in the current ready
        self._chores: set[asyncio.Task[None]] = set()
        self._tail_checker: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> LiveSession:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the cursors and start connecting (does not wait for the connection)."""
        if self._runner is not None:
            return
        for channel_id, cursor in self.store.load().items():
            self._buffers[channel_id] = ChannelBuffer(
                channel_id, cursor.seq, self._opts.max_buffered
            )
            self._epochs[channel_id] = cursor.epoch
        self._runner = asyncio.create_task(self._run(), name="rtc-live")
        if self._opts.tail_check_s:
            self._tail_checker = asyncio.create_task(self._check_tails(), name="rtc-tails")

    async def aclose(self) -> None:
        """Stop: close the connection, fail unfinished sends, flush the cursor store."""
        if self._closed:
            return
        self._closed = True
        self._closed_evt.set()
        tasks: list[asyncio.Task[Any]] = []
        for bg in (self._runner, self._tail_checker):
            if bg is not None:
                bg.cancel()
                tasks.append(bg)
        for handle in self._gap_timers.values():
            handle.cancel()
        self._gap_timers.clear()
        tasks.extend(self._backfills.values())
        tasks.extend(self._chores)
        for pending in list(self._pending.values()):
            if pending.task is not None:
                tasks.append(pending.task)
                pending.task.cancel()
        for task in tasks:
            task.cancel()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.ws.close(), 1)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._out.put_nowait(_STOP)
        self.store.close()

    @property
    def connected(self) -> bool:
        """A connection is up and past `ready`."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until a connection is up and past `ready` (bound it with asyncio.timeout)."""
        self._raise_if_failed()
        await _wait_any(self._connected.wait(), self._closed_evt.wait(), limit_s=None)
        self._raise_if_failed()
        if not self._connected.is_set():
            raise ChatAPIError(0, "session_closed", "the live session is closed")

    def cursors(self) -> dict[str, int]:
        """Highest seq taken in (delivered or queued for the application) per followed channel."""
        return {
            cid: buf.delivered_seq for cid, buf in self._buffers.items() if cid not in self._left
        }

    # -- the application side -------------------------------------------------------------
    async def next_event(self) -> Event:
        """The next event, in seq order within its channel; saves the channel's cursor.

        Raises ChatAPIError `session_closed` once the session is closed and drained, or the
        error that ended it.
        """
        item = await self._out.get()
        if isinstance(item, _Stop):
            self._out.put_nowait(item)  # keep waking other readers
            self._raise_if_failed()
            raise ChatAPIError(0, "session_closed", "the live session is closed")
        event, epoch = item
        self.store.save(event["channel_id"], event["seq"], epoch)
        self.stats.events_delivered += 1
        return event

    async def events(self) -> AsyncIterator[Event]:
        """Every event, as `next_event()` returns them, until the session closes."""
        while True:
            try:
                event = await self.next_event()
            except ChatAPIError as exc:
                if exc.code == "session_closed":
                    return
                raise
            yield event

    def pending_events(self) -> int:
        """Events ready for the application and not yet taken."""
        return self._out.qsize()

    async def send(
        self,
        channel_id: str,
        body: str,
        client_msg_id: str | None = None,
        *,
        attachments: list[Any] | None = None,
    ) -> Event:
        """Send a message; returns it as the server stored it.

        Over the WebSocket while connected, over REST while not, retried with the same
        `client_msg_id` until acknowledged: the server stores it once. Raises ChatAPIError
        for a refusal (not a member, validation, same id with another body, …), and
        `send_timeout` if `send_deadline_s` passes first (a later retry with the same id is
        still safe). Cancelling the caller does not stop the send; closing the session does.
        """
        self._raise_if_failed()
        if self._closed:
            raise ChatAPIError(0, "session_closed", "the live session is closed")
        cmid = client_msg_id or new_client_msg_id()
        pending = self._pending.get(cmid)
        if pending is not None and (pending.channel_id, pending.body) != (channel_id, body):
            raise ChatAPIError(
                422,
                "idempotency_key_reused",
                f"client_msg_id {cmid!r} is being sent with another channel or body",
            )
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = _PendingSend(channel_id, body, attachments, loop.create_future())
            self._pending[cmid] = pending
            task = asyncio.create_task(self._send_loop(cmid, pending), name=f"rtc-send-{cmid}")
            pending.task = task

            def done(t: asyncio.Task[Event]) -> None:
                if self._pending.get(cmid) is pending:
                    del self._pending[cmid]
                if not t.cancelled():
                    t.exception()  # retrieved: a caller that went away leaves no warning

            task.add_done_callback(done)
        assert pending.task is not None
        deadline = self._opts.send_deadline_s
        try:
            msg = await asyncio.wait_for(asyncio.shield(pending.task), deadline)
            if isinstance(msg.get("seq"), int):
                self._note_last(str(msg.get("channel_id", channel_id)), msg["seq"])
            return msg
        except TimeoutError:
            pending.task.cancel()
            raise ChatAPIError(
                0, "send_timeout", f"no acknowledgement within {deadline} s"
            ) from None
        except asyncio.CancelledError:
            if pending.task.cancelled() and self._closed:
                raise ChatAPIError(0, "session_closed", "the live session closed") from None
            raise

    # -- sending -------------------------------------------------------------------------
    async def _send_loop(self, cmid: str, p: _PendingSend) -> Event:
        frame: dict[str, Any] = {
            "type": "send",
            "channel_id": p.channel_id,
            "client_msg_id": cmid,
            "body": p.body,
        }
        if p.attachments:
            frame["attachments"] = p.attachments
        text = orjson.dumps(frame).decode()
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed:
                raise ChatAPIError(0, "session_closed", "the live session closed")
            if p.future.done():
                err = p.future.exception()
                if err is None:
                    return p.future.result()
                p.future = loop.create_future()
            conn = self._conn
            if conn is not None and conn.ready and not conn.lost.is_set():
                try:
                    await conn.ws.send(text)
                    self.stats.sends_ws += 1
                except (ConnectionClosed, OSError):
                    await _wait_any(conn.lost.wait(), self._closed_evt.wait(), limit_s=1.0)
                    continue
                await _wait_any(
                    p.future,
                    conn.lost.wait(),
                    self._closed_evt.wait(),
                    limit_s=self._opts.ws_send_timeout_s,
                )
                if not p.future.done():
                    continue  # lost, closed or no answer in time: send again
                err = p.future.exception()
                if err is None:
                    return p.future.result()
                if isinstance(err, ChatAPIError) and err.transient:
                    delay = err.retry_after_s
                    if delay is None:
                        delay = self._backoff(attempt)
                    attempt += 1
                    await _wait_any(self._closed_evt.wait(), limit_s=delay)
                    continue
                raise err
            # Not connected: the same send over REST (retried inside, bounded).
            try:
                self.stats.sends_rest += 1
                return await self._client.send_message(
                    p.channel_id, p.body, cmid, attachments=p.attachments
                )
            except ChatAPIError as exc:
                if not exc.transient:
                    raise
            # Wait for a connection, or for the next REST attempt.
            await _wait_any(
                self._connected.wait(), self._closed_evt.wait(), limit_s=self._backoff(attempt)
            )
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        return self._client.backoff(
            attempt, self._opts.reconnect_base_s, self._opts.reconnect_cap_s
        )

    # -- the connection loop ---------------------------------------------------------------
    async def _run(self) -> None:
        attempt = 0
        unauthorized_in_a_row = 0
        slow_in_a_row = 0
        try:
            while not self._closed:
                conn: _Conn | None = None
                token = ""
                try:
                    token = await self._client.fresh_token()
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
                if self._closed:
                    return
                if conn is None or not conn.ready:
                    self.stats.connect_failures += 1
                code = conn.close_code if conn is not None else None
                if (
                    code == CLOSE_UNAUTHORIZED
                    and conn is not None
                    and (conn.revoked or conn.close_reason == "session_revoked")
                ):
                    raise ChatAPIError(
                        401, "session_revoked", "this login was signed out or revoked"
                    )
                if code == CLOSE_UNAUTHORIZED:
                    unauthorized_in_a_row += 1
                    if unauthorized_in_a_row > 2:
                        raise ChatAPIError(401, "unauthorized", "the server refuses our tokens")
                    try:
                        await self._client.token_rejected(token)
                        self.stats.auth_refreshes += 1
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
                    delay = wait_s + self._client.backoff(0, wait_s / 2, wait_s / 2)
                    attempt = 0
                elif code == CLOSE_TRY_AGAIN and slow_in_a_row == 0:
                    slow_in_a_row += 1
                    self.stats.slow_consumer_closes += 1
                    delay = 0.0  # fell behind: resume at once from our cursors
                else:
                    if code == CLOSE_TRY_AGAIN:
                        self.stats.slow_consumer_closes += 1
                    else:
                        slow_in_a_row = 0
                    delay = self._backoff(attempt)
                    attempt += 1
                if delay > 0:
                    await _wait_any(self._closed_evt.wait(), limit_s=delay)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the session cannot go on: tell the application
            self._fail(exc)

    async def _connect(self, token: str) -> _Conn:
        ws = await websockets.connect(
            self._client.ws_url,
            open_timeout=self._opts.ws_open_timeout_s,
            max_size=16 * 1024 * 1024,
            max_queue=None,
            close_timeout=1,
        )
        self._generation += 1
        conn = _Conn(ws, self._generation, token=token)
        auth: dict[str, Any] = {"type": "auth", "token": token}
        cursors = self._resume_cursors()
        if cursors:
            auth["cursors"] = cursors
        try:
            await ws.send(orjson.dumps(auth).decode())
        except BaseException:
            ws.transport.abort()
            raise
        return conn

    def _resume_cursors(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for cid, buf in self._buffers.items():
            if cid in self._left:
                continue
            epoch = self._epochs.get(cid)
            out[cid] = (
                buf.delivered_seq if epoch is None else {"seq": buf.delivered_seq, "epoch": epoch}
            )
        return out

    def _silence_limit(self, conn: _Conn) -> float | None:
        """How long the connection may stay silent before it counts as dead."""
        if not conn.ready:  # auth is answered within the server's own auth timeout
            return max(self._opts.ws_open_timeout_s, 10.0)
        if self.heartbeat_ms:
            return self.heartbeat_ms / 1000 * self._opts.heartbeat_misses
        return None  # a server without heartbeats: trust TCP and pings

    async def _watch(self, conn: _Conn, last_rx: list[float]) -> None:
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
                self.stats.dead_connections += 1
                conn.ws.transport.abort()
                return

    async def _serve(self, conn: _Conn) -> None:
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
                    frame = orjson.loads(raw)
                    follow_up = self._on_frame(conn, frame) if isinstance(frame, dict) else None
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("live session: cannot handle frame %.200r: %r", raw, exc)
                    continue
                if follow_up is not None:
                    await ws.send(orjson.dumps(follow_up).decode())
        except ConnectionClosed as exc:
            conn.close_code = exc.rcvd.code if exc.rcvd is not None else None
            conn.close_reason = exc.rcvd.reason if exc.rcvd is not None else ""
        finally:
            watchdog.cancel()
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer

    async def _keep_authenticated(self, conn: _Conn) -> None:
        """Send the socket a fresh token before its own expires (80 % into its life).

        A refresh that cannot succeed (the login is over) stops this: the server then
        closes the socket, and the reconnect says why.
        """
        attempt = 0
        while True:
            conn.rescheduled.clear()
            # Nothing to schedule until `ready` tells the expiry (or the server asks).
            due = None if conn.expires_at is None else self._renew_in(conn)
            await _wait_any(
                conn.lost.wait(),
                self._closed_evt.wait(),
                conn.renew_now.wait(),
                conn.rescheduled.wait(),
                limit_s=due,
            )
            if conn.lost.is_set() or self._closed:
                return
            if not conn.renew_now.is_set() and (conn.rescheduled.is_set() or due is None):
                continue  # a new expiry: schedule again
            conn.renew_now.clear()
            # Shielded: a refresh cut off after the server rotated the refresh token
            # would leave us the old one, whose reuse revokes the whole login.
            refresh = asyncio.ensure_future(self._client.renewed_token(conn.token))
            refresh.add_done_callback(_retrieve)
            try:
                token = await asyncio.shield(refresh)
            except ChatAPIError as exc:
                if not exc.transient:
                    log.info("live session: cannot renew the token: %s", exc)
                    return
                await _wait_any(conn.lost.wait(), limit_s=self._backoff(attempt))
                attempt += 1
                conn.renew_now.set()
                continue
            conn.answered.clear()
            conn.sent_token = token
            try:
                await conn.ws.send(orjson.dumps({"type": "auth", "token": token}).decode())
            except (ConnectionClosed, OSError):
                return
            await _wait_any(
                conn.answered.wait(), conn.lost.wait(), limit_s=self._opts.ws_send_timeout_s
            )
            if conn.token == token:
                attempt = 0
            elif not conn.lost.is_set():  # refused or unanswered: again, backing off
                await _wait_any(conn.lost.wait(), limit_s=self._backoff(attempt))
                attempt += 1
                conn.renew_now.set()

    def _renew_in(self, conn: _Conn) -> float:
        """Seconds until the socket's token is to be renewed: at 80 % of its life."""
        assert conn.expires_at is not None
        left = conn.expires_at - time.time()
        lifetime, _ = _jwt_times(conn.token)
        if lifetime is None or lifetime <= 0:
            lifetime = max(left, 1.0)
        # Never sooner than a tenth of a lifetime: with a clock far off the server's,
        # the session must not refresh in a loop (a refused token is renewed at once).
        return max(left - 0.2 * lifetime, 0.1 * lifetime)

    def _lost(self, conn: _Conn) -> None:
        if self._conn is conn:
            self._conn = None
            self._connected.clear()
        if conn.ready:
            self.stats.disconnects += 1
        conn.lost.set()
        with contextlib.suppress(Exception):
            conn.ws.transport.abort()

    # -- frames ------------------------------------------------------------------------------
    def _on_frame(self, conn: _Conn, frame: dict[str, Any]) -> dict[str, Any] | None:
        kind = frame.get("type")
        if kind == "event":
            self._on_event(frame)
        elif kind == "send_ok":
            pending = self._pending.get(str(frame.get("client_msg_id")))
            if pending is not None and not pending.future.done():
                pending.future.set_result(frame["message"])
        elif kind == "ready":
            return self._on_ready(conn, frame)
        elif kind == "resync":
            self.stats.resyncs += 1
            self._start_backfill(str(frame["channel_id"]), resync=True)
        elif kind == "error":
            self._on_error(conn, frame)
        elif kind == "auth_ok":
            expires_at = frame.get("expires_at")
            if isinstance(expires_at, int | float) and conn.sent_token:
                conn.token, conn.expires_at = conn.sent_token, float(expires_at)
                conn.rescheduled.set()
                self.stats.reauths += 1
            conn.answered.set()
        elif kind == "going_away":
            ms = frame.get("reconnect_after_ms")
            conn.going_away_ms = ms if isinstance(ms, int) and ms >= 0 else 1000
            self.stats.going_away += 1
            self.stats.last_going_away_at = time.monotonic()
            self.stats.last_going_away_ms = conn.going_away_ms
        # heartbeat, pong, typing: nothing to do (any frame keeps the connection alive)
        return None

    def _on_error(self, conn: _Conn, frame: dict[str, Any]) -> None:
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
        cmid = frame.get("client_msg_id")
        if ref == "send" and isinstance(cmid, str):
            pending = self._pending.get(cmid)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(ChatAPIError.from_frame(frame))
            return
        channel_id = frame.get("channel_id")
        if ref in ("auth", "resume") and isinstance(channel_id, str):
            if frame.get("code") == "not_found":
                self._left.add(channel_id)  # not a member any more
            else:  # a cursor the server could not use: page the channel instead
                self._start_backfill(channel_id, resync=True)
            return
        log.info("live session: server error frame %s", frame)

    def _on_ready(self, conn: _Conn, frame: dict[str, Any]) -> dict[str, Any] | None:
        self.user_id = str(frame["user_id"])
        expires_at = frame.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at > 0:
            conn.expires_at = float(expires_at)
            conn.rescheduled.set()
        hb = frame.get("heartbeat_ms")
        self.heartbeat_ms = hb if isinstance(hb, int) and hb > 0 else None
        listed: dict[str, dict[str, Any]] = {}
        rewind: dict[str, Any] = {}
        self._ready_last = {}
        for ch in frame.get("channels", []):
            cid, last, epoch = str(ch["id"]), int(ch["last_seq"]), ch.get("epoch")
            listed[cid] = ch
            self._known_last[cid] = last
            self._ready_last[cid] = last
            buf = self._buffers.get(cid)
            if buf is None or cid in self._left:
                # New to us, or joined again while we were away.
                start = last if self.start_from == "last_seq" else 0
                if buf is None:
                    self._buffers[cid] = ChannelBuffer(cid, start, self._opts.max_buffered)
                else:
                    start = max(start, buf.delivered_seq) if start == 0 else start
                    buf.reset(start)
                self._left.discard(cid)
                self._epochs[cid] = epoch
                if start < last:  # ready subscribed us from last_seq: ask for the rest
                    rewind[cid] = {"seq": start, "epoch": epoch}
            else:
                known = self._epochs.get(cid)
                if known is not None and epoch is not None and known != epoch:
                    # A new history: keep only the seqs both may share. The server
                    # answers our old-epoch cursor with resync, and we page from here.
                    self.stats.epoch_changes += 1
                    buf.reset(min(buf.delivered_seq, last))
                self._epochs[cid] = epoch
        for cid in self._buffers:
            if cid not in listed:
                self._left.add(cid)
        self.channels = listed
        conn.ready = True
        self._conn = conn
        self._connected.set()
        self.stats.connects += 1
        self.stats.ready_at.append(time.monotonic())
        for cid in listed:
            if self._behind(cid):
                self._arm_gap_timer(cid)
        if rewind:
            return {"type": "resume", "cursors": rewind}
        return None

    # -- events ------------------------------------------------------------------------------
    def _on_event(self, frame: dict[str, Any]) -> None:
        frame.pop("type", None)
        self._offer(frame)

    def _offer(self, ev: Event) -> None:
        """Take in one event (live, replayed or paged) and deliver what became contiguous."""
        self.stats.events_received += 1
        cid = str(ev["channel_id"])
        seq = int(ev["seq"])
        buf = self._buffers.get(cid)
        if buf is None or cid in self._left:
            if buf is not None and not self._joins_me(ev):
                return  # a late copy of something from a channel we left
            if buf is None:
                buf = self._buffers[cid] = ChannelBuffer(cid, seq - 1, self._opts.max_buffered)
            elif seq - 1 > buf.delivered_seq:
                buf.reset(seq - 1)
            self._left.discard(cid)
            channel = (ev.get("data") or {}).get("channel")
            if isinstance(channel, dict):
                self._epochs[cid] = channel.get("epoch")
                self.channels[cid] = channel
            else:
                self._epochs.setdefault(cid, None)
        try:
            ready = buf.offer(seq, ev)
        except BufferOverflow:
            self.stats.resyncs += 1
            self._start_backfill(cid, resync=True)
            return
        epoch = self._epochs.get(cid)
        for item in ready:
            self._out.put_nowait((item, epoch))
            if item.get("event") == "member.left" and self._is_me(item):
                if self._ready_last.get(cid, -1) > int(item["seq"]):
                    # Our own leave, but this connection's ready says we are a member
                    # with later events: we were added back while away. The server ends
                    # a replay at our member.left; ask it to go on from there.
                    self._resume_channel(cid, int(item["seq"]))
                else:
                    self._left.add(cid)
        if cid not in self._backfills and self._behind(cid):
            self._arm_gap_timer(cid)

    def _resume_channel(self, cid: str, seq: int) -> None:
        conn = self._conn
        if conn is None or not conn.ready:
            return  # the next connection resumes the channel from its cursor anyway
        epoch = self._epochs.get(cid)
        cursor: Any = seq if epoch is None else {"seq": seq, "epoch": epoch}
        text = orjson.dumps({"type": "resume", "cursors": {cid: cursor}}).decode()

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await conn.ws.send(text)

        task = asyncio.create_task(send())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _note_last(self, cid: str, seq: int) -> None:
        """Event `seq` of `cid` exists (a send answer, a channel listing): expect it."""
        if seq > self._known_last.get(cid, 0):
            self._known_last[cid] = seq
        if cid not in self._backfills and self._behind(cid):
            self._arm_gap_timer(cid)

    def _behind(self, cid: str) -> bool:
        """A hole in the buffer, or events we know exist and have not taken in."""
        buf = self._buffers.get(cid)
        if buf is None or cid in self._left:
            return False
        return buf.gap() is not None or buf.delivered_seq < self._known_last.get(cid, 0)

    def _is_me(self, ev: Event) -> bool:
        data = ev.get("data") or {}
        return self.user_id is not None and data.get("user_id") == self.user_id

    def _joins_me(self, ev: Event) -> bool:
        if ev.get("event") not in JOIN_EVENTS or self.user_id is None:
            return False
        data = ev.get("data") or {}
        return data.get("user_id") == self.user_id or self.user_id in (data.get("member_ids") or [])

    def _arm_gap_timer(self, cid: str) -> None:
        """Backfill `cid` over REST if it is still behind, with no progress, after a grace."""
        buf = self._buffers.get(cid)
        if cid in self._gap_timers or self._closed or buf is None:
            return
        loop = asyncio.get_running_loop()
        armed_at = buf.delivered_seq

        def fire() -> None:
            self._gap_timers.pop(cid, None)
            if self._closed or cid in self._backfills or not self._behind(cid):
                return
            if self._buffers[cid].delivered_seq > armed_at:
                self._arm_gap_timer(cid)  # still coming in (a replay): give it time
                return
            self.stats.gap_backfills += 1
            self._start_backfill(cid, resync=False)

        self._gap_timers[cid] = loop.call_later(self._opts.gap_grace_s, fire)

    # -- backfill over REST --------------------------------------------------------------------
    def _start_backfill(self, cid: str, *, resync: bool) -> None:
        if self._closed or cid in self._left:
            return
        if cid in self._backfills:
            if resync:
                self._backfill_again.add(cid)
            return
        task = asyncio.create_task(self._backfill(cid, resync), name=f"rtc-backfill-{cid}")
        self._backfills[cid] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._backfills.get(cid) is t:
                del self._backfills[cid]
            if not t.cancelled() and t.exception() is not None:
                log.warning("backfill of %s failed: %r", cid, t.exception())
            if self._closed:
                return
            if cid in self._backfill_again:
                self._backfill_again.discard(cid)
                self._start_backfill(cid, resync=True)
            elif self._behind(cid):
                self._arm_gap_timer(cid)

        task.add_done_callback(done)

    async def _backfill(self, cid: str, resync: bool) -> None:
        """Page GET /channels/{cid}/events from our cursor until the end (or the hole closes)."""
        attempt = 0
        checked_epoch = not resync
        while not self._closed and cid not in self._left:
            buf = self._buffers[cid]
            try:
                if not checked_epoch:
                    channel = await self._client.get_channel(cid)
                    epoch = channel.get("epoch")
                    known = self._epochs.get(cid)
                    if known is not None and epoch is not None and known != epoch:
                        self.stats.epoch_changes += 1
                        buf.reset(min(buf.delivered_seq, int(channel["last_seq"])))
                    self._epochs[cid] = epoch
                    checked_epoch = True
                if not resync and not self._behind(cid):
                    return
                page = await self._client.events(
                    cid, after_seq=buf.delivered_seq, limit=self._opts.page_size
                )
            except ChatAPIError as exc:
                if exc.status in (403, 404):
                    self._left.add(cid)
                    return
                if not exc.transient:
                    raise
                await _wait_any(self._closed_evt.wait(), limit_s=self._backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self.stats.pages_fetched += 1
            for ev in page["events"]:
                self._offer(ev)
            if not page["has_more"] or not page["events"]:
                # The end of the channel as the server has it now: expect nothing beyond
                # (a stale expectation, e.g. from before an epoch change, must not loop).
                end = max([buf.delivered_seq] + [int(e["seq"]) for e in page["events"]])
                if self._known_last.get(cid, 0) > end:
                    self._known_last[cid] = end
                return

    async def _check_tails(self) -> None:
        """Every tail_check_s, compare each channel's last_seq with what we have.

        Live delivery is at-least-once only if every event is published; a missed
        publication at the tail of a quiet channel would otherwise go unnoticed until the
        channel's next event.
        """
        interval = self._opts.tail_check_s
        assert interval
        while not self._closed:
            await _wait_any(self._closed_evt.wait(), limit_s=interval)
            if self._closed or not self.connected:
                continue
            try:
                listed = await self._client.my_channels()
            except ChatAPIError as exc:
                log.debug("tail check failed: %s", exc)
                continue
            for ch in listed:
                cid, last = ch.get("id"), ch.get("last_seq")
                if cid in self._buffers and isinstance(last, int):
                    self._note_last(cid, last)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        log.warning("live session ended: %r", exc)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)
        self._closed_evt.set()
        self._out.put_nowait(_STOP)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's outcome as seen (its awaiter may have gone)."""
    if not task.cancelled():
        task.exception()


async def _wait_any(*aws: Awaitable[Any], limit_s: float | None) -> None:
    """Wait until the first of `aws` completes or `limit_s` passes.

    Futures passed in are only watched, never cancelled; coroutines are run as tasks and
    cancelled when this returns.
    """
    owned: list[asyncio.Future[Any]] = []
    watched: set[asyncio.Future[Any]] = set()
    for aw in aws:
        if isinstance(aw, asyncio.Future):
            watched.add(aw)
        else:
            task: asyncio.Future[Any] = asyncio.ensure_future(aw)
            owned.append(task)
            watched.add(task)
    try:
        await asyncio.wait(watched, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in owned:
            fut.cancel()
