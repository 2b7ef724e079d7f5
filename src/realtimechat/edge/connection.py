"""One WebSocket connection: a bounded send queue drained by one sender task.

Everything the connection sends goes through its queue, so frames leave in
the order they were queued. The queue is bounded in frames and in bytes: a
client that does not read is closed (1013), whatever the size of what it makes
the server answer. The sender keeps, per channel, the highest seq it
has sent (`last_sent`): it drops what the client already has, and fills a hole
from the database before sending what comes after it, so each channel's
events leave in seq order with no gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.websockets import WebSocket

from realtimechat.domain.models import Event
from realtimechat.edge import frames
from realtimechat.ids import now_ms
from realtimechat.observability import metrics
from realtimechat.services.auth import Principal
from realtimechat_client import protocol

log = logging.getLogger(__name__)

FetchEvents = Callable[[str, int, int], Awaitable[list[Event]]]
REPLAY_PAGE = 200


# Bound once: looking a labelled child up costs more than incrementing it, per delivery.
_DELIVERED = metrics.EVENTS_DELIVERED
_EVENT_FRAMES_OUT = metrics.WS_FRAMES.labels("out", "event")


def utf8_len(text: str) -> int:
    """The size of `text` on the wire (cheap for ASCII, the usual case)."""
    return len(text) if text.isascii() else len(text.encode())


@dataclass(frozen=True, slots=True)
class SendFrame:
    text: str


@dataclass(frozen=True, slots=True)
class LiveEvent:
    channel_id: str
    seq: int
    text: str
    created_at: int = 0  # commit time (ms): send-to-deliver latency starts here
    leave: bool = False  # the event that ends this user's membership
    join: bool = False  # the event that starts it: live delivery begins here
    nbytes: int = 0  # utf8_len(text), computed once per fan-out (0: not computed)


@dataclass(frozen=True, slots=True)
class Rewind:
    """Resume: send everything stored after `seq` again, from the database."""

    channel_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The bus missed something: send what is stored after what this connection sent."""

    channel_id: str


@dataclass(frozen=True, slots=True)
class Resync:
    """The client must page the REST events; live delivery goes on after `seq`."""

    channel_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str = ""


Item = SendFrame | LiveEvent | Rewind | CatchUp | Resync | Close


def _size(item: Item) -> int:
    if isinstance(item, LiveEvent):
        return item.nbytes or utf8_len(item.text)
    if isinstance(item, SendFrame):
        return utf8_len(item.text)
    return 0


class Connection:
    """A connected, authenticated WebSocket session.

    `session_id` names this socket; `principal.session_id` is the login its token
    belongs to (what a sign-out revokes).
    """

    def __init__(
        self,
        ws: WebSocket,
        *,
        user_id: str,
        session_id: str,
        queue_size: int,
        replay_limit: int,
        fetch: FetchEvents,
        close_timeout_s: float = 5.0,
        queue_bytes: int = 4 * 1024 * 1024,
        principal: Principal | None = None,
        reauth_grace_s: float = 30.0,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.session_id = session_id
        self.principal = principal if principal is not None else Principal(user_id)
        self._reauth_grace_s = reauth_grace_s
        self.queued_bytes = 0
        self._queue_bytes = queue_bytes
        self._ending = False
        self._force_timer: asyncio.TimerHandle | None = None
        self.last_sent: dict[str, int] = {}
        self._queue: asyncio.Queue[Item] = asyncio.Queue(queue_size)
        self._replay_limit = replay_limit
        self._fetch = fetch
        self._close_timeout_s = close_timeout_s
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self.closing = False
        self._close_started = False

    @property
    def deadline(self) -> float:
        """Epoch seconds after which this socket's authentication is over (inf: never)."""
        expires_at = self.principal.expires_at
        return expires_at + self._reauth_grace_s if expires_at else math.inf

    def start(self, first: dict[str, object] | None = None) -> None:
        """Start sending: `first` (the ready frame) before anything already queued."""
        self._sender = asyncio.create_task(
            self._send_loop(None if first is None else frames.dumps(first)),
            name=f"ws-send-{self.session_id}",
        )

    def subscribe(self, channel_id: str, after_seq: int) -> None:
        """Start live delivery of a channel after `after_seq`."""
        self.last_sent[channel_id] = after_seq

    def offer(self, item: Item) -> None:
        """Queue an item without waiting; a full queue closes the connection (1013).

        Full is `queue_size` items or `queue_bytes` bytes of frames, whichever comes
        first (one frame alone is always taken: the bound is for what piles up).
        """
        if self.closing:
            return
        size = _size(item)
        if size and self.queued_bytes + size > self._queue_bytes and not self._queue.empty():
            self._overflow("queue_bytes")
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._overflow("queue_frames")
            return
        self.queued_bytes += size

    def _overflow(self, bound: str) -> None:
        log.info(
            "slow consumer closed",
            extra={"session_id": self.session_id, "bound": bound, "queued": self.queued_bytes},
        )
        metrics.WS_SLOW_CONSUMERS.inc()
        metrics.WS_CLOSES.labels(bound).inc()
        self.abort(protocol.CLOSE_TRY_AGAIN, "send queue full; resume from your cursors")

    def send_frame(self, frame: dict[str, object]) -> None:
        self.offer(SendFrame(frames.dumps(frame)))

    def close_after_queue(self, code: int, reason: str = "") -> None:
        """Send what is queued, then close; closes at once if the queue is full."""
        if self.closing:
            return
        try:
            self._queue.put_nowait(Close(code, reason))
        except asyncio.QueueFull:
            self.abort(code, reason)

    def abort(self, code: int, reason: str = "") -> None:
        """Close now, dropping whatever is queued."""
        if self.closing:
            return
        self.closing = True
        self._force_close(code, reason)

    def end(self, code: int, reason: str, frame: dict[str, object]) -> None:
        """Drop what is queued, send `frame`, then close with `code` and `reason`.

        Nothing else reaches the client after `frame` (a replay in progress stops). A
        client that does not take the frame in within the close timeout is closed anyway.
        """
        if self.closing:
            return
        self.closing = True
        self._ending = True
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                self._queue.get_nowait()
        last = SendFrame(frames.dumps(frame))
        self.queued_bytes = _size(last)
        try:
            self._queue.put_nowait(last)
            self._queue.put_nowait(Close(code, reason))
        except asyncio.QueueFull:  # a queue of one: no room for the frame
            self._force_close(code, reason)
            return
        loop = asyncio.get_running_loop()
        self._force_timer = loop.call_later(self._close_timeout_s, self._force_close, code, reason)

    def _force_close(self, code: int, reason: str) -> None:
        if self._close_started:
            return  # the close is under way
        if self._sender is not None:
            self._sender.cancel()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def wait_closed(self) -> None:
        if self._sender is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._sender

    async def stop(self) -> None:
        """The peer is gone: stop sending."""
        self.closing = True
        if self._force_timer is not None:
            self._force_timer.cancel()
        if self._sender is not None:
            self._sender.cancel()
            await self.wait_closed()

    async def _close(self, code: int, reason: str) -> None:
        self._close_started = True
        if self._force_timer is not None:
            self._force_timer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), timeout=self._close_timeout_s)

    async def _send_loop(self, first: str | None = None) -> None:
        try:
            if first is not None:
                await self.ws.send_text(first)
            while True:
                item = await self._queue.get()
                self.queued_bytes -= _size(item)
                if isinstance(item, LiveEvent):
                    await self._send_event(item)
                elif isinstance(item, SendFrame):
                    await self.ws.send_text(item.text)
                elif isinstance(item, Rewind):
                    if item.channel_id in self.last_sent:
                        self.last_sent[item.channel_id] = item.seq
                        await self._fill(item.channel_id, None)
                elif isinstance(item, CatchUp):
                    if item.channel_id in self.last_sent:
                        await self._fill(item.channel_id, None)
                elif isinstance(item, Resync):
                    await self._resync(item.channel_id, item.seq)
                else:
                    self.closing = True
                    await self._close(item.code, item.reason)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A broken socket, or the database failed a replay: close, so the client
            # resumes elsewhere instead of waiting on a session that sends nothing.
            log.warning("websocket sender stopped: %r", exc, extra={"session_id": self.session_id})
            self.closing = True
            await self._close(protocol.CLOSE_INTERNAL_ERROR, "server error; resume")

    async def _send_event(self, item: LiveEvent) -> None:
        last = self.last_sent.get(item.channel_id)
        if last is None and item.join:
            # Set here, in queue order, not when the hub saw the join: events queued
            # before it (the user's own leave, say) must still go out.
            last = self.last_sent[item.channel_id] = item.seq - 1
        if last is None or item.seq <= last:
            return  # not subscribed, or the client has it already
        if item.seq > last + 1:
            if item.seq - last > self._replay_limit:
                await self._resync(item.channel_id, item.seq - 1)
            else:
                await self._fill(item.channel_id, item.seq - 1)
        if self.last_sent.get(item.channel_id, item.seq) >= item.seq:
            return
        await self.ws.send_text(item.text)
        _DELIVERED.inc()
        _EVENT_FRAMES_OUT.inc()
        if item.created_at:
            metrics.SEND_TO_DELIVER.observe(max(0, now_ms() - item.created_at) / 1000)
        self.last_sent[item.channel_id] = item.seq
        if item.leave:
            del self.last_sent[item.channel_id]

    async def _fill(self, channel_id: str, until: int | None) -> None:
        """Send stored events after last_sent, up to `until` (None: all there are).

        Between this user's own `member.left` and their next `member.joined` the
        replay sends nothing (it was not theirs to see), however it was queued; a
        replay that ends while they are away ends the subscription.
        """
        away = False
        while True:
            after = self.last_sent[channel_id]
            if until is not None and after >= until:
                break
            limit = REPLAY_PAGE if until is None else min(REPLAY_PAGE, until - after)
            page = await self._fetch(channel_id, after, limit)
            for ev in page:
                if self._ending:
                    return  # the session ends: its last frame is queued
                membership = ev.type in ("member.left", "member.joined") and self._is_me(ev)
                if membership and ev.type == "member.joined":
                    away = False
                if not away:
                    await self.ws.send_text(frames.event_frame(ev))
                    _DELIVERED.inc()
                    _EVENT_FRAMES_OUT.inc()
                self.last_sent[channel_id] = ev.seq
                if membership and ev.type == "member.left":
                    away = True
            if len(page) < limit:
                break
        if away:
            del self.last_sent[channel_id]

    def _is_me(self, ev: Event) -> bool:
        return bool(orjson.loads(ev.data).get("user_id") == self.user_id)

    async def _resync(self, channel_id: str, seq: int) -> None:
        await self.ws.send_text(frames.dumps(frames.resync(channel_id)))
        if channel_id in self.last_sent:
            self.last_sent[channel_id] = max(self.last_sent[channel_id], seq)
