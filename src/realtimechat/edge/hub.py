"""The node's registry of live connections and its fan-out from the bus."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Collection

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.models import Event
from realtimechat.edge import frames
from realtimechat.edge.connection import (
    CatchUp,
    Connection,
    LiveEvent,
    Rewind,
    SendFrame,
    utf8_len,
)
from realtimechat.observability import metrics
from realtimechat.services.auth import Principal
from realtimechat_client import protocol

# Far longer than any database read between a subscriber's ready and its subscription.
PUBLISHED_SEQ_RETAIN_S = 300.0


class Hub:
    """Routes each committed event to the local connections of the channel's members.

    It also ends sockets whose authentication is over: every `expiry_check_s` (against
    `clock`, epoch seconds) those past their token's expiry and grace, and on demand
    those of revoked logins (`close_sessions`).
    """

    def __init__(
        self,
        heartbeat_ms: int,
        reorder_ms: float = 0.0,
        *,
        clock: Callable[[], float] = time.time,
        expiry_check_s: float = 1.0,
    ) -> None:
        self._by_channel: defaultdict[str, set[Connection]] = defaultdict(set)
        self._by_user: defaultdict[str, set[Connection]] = defaultdict(set)
        self._by_login: defaultdict[str, set[Connection]] = defaultdict(set)
        self._clock = clock
        self._expiry_check_s = expiry_check_s
        self._expiry_task: asyncio.Task[None] | None = None
        # Highest seq seen on the bus per channel: lets a new subscriber notice
        # an event that was published between its database read and its subscription.
        self.published_seq: dict[str, int] = {}
        self._published_at: dict[str, float] = {}
        self._heartbeat_ms = heartbeat_ms
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.delivered = 0
        # Events that arrived ahead of a gap, held for the gap to arrive (see on_event).
        self._reorder_s = reorder_ms / 1000
        self._dispatched: dict[str, int] = {}
        self._held: dict[str, dict[int, Event]] = {}
        self._held_timers: dict[str, asyncio.TimerHandle] = {}

    @property
    def connections(self) -> set[Connection]:
        return {c for conns in self._by_user.values() for c in conns}

    def start(self) -> None:
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="ws-heartbeat")
        self._expiry_task = asyncio.create_task(self._expire_loop(), name="ws-expiry")
        metrics.WS_QUEUED_BYTES.set_function(self.queued_bytes)

    async def stop(self) -> None:
        for task in (self._heartbeat_task, self._expiry_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def now(self) -> float:
        """The hub's clock: epoch seconds, as token expiries are."""
        return self._clock()

    def register(self, conn: Connection) -> None:
        """Make the connection reachable by user (for joins) before reading its channels."""
        self._by_user[conn.user_id].add(conn)
        if conn.principal.session_id is not None:
            self._by_login[conn.principal.session_id].add(conn)

    def reauthenticate(self, conn: Connection, principal: Principal) -> None:
        """The connection goes on under a fresh token of the same user."""
        assert principal.user_id == conn.user_id
        self._forget_login(conn)
        conn.principal = principal
        if principal.session_id is not None:
            self._by_login[principal.session_id].add(conn)

    def _forget_login(self, conn: Connection) -> None:
        login = conn.principal.session_id
        if login is None:
            return
        conns = self._by_login.get(login)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_login[login]

    def close_sessions(self, session_ids: Collection[str]) -> int:
        """End every local socket of these logins (4401 `session_revoked`); how many."""
        ended = 0
        for login in session_ids:
            for conn in list(self._by_login.get(login, ())):
                if not conn.closing:
                    end_session(conn, "session_revoked", "this login was signed out or revoked")
                    ended += 1
        return ended

    def expire(self) -> int:
        """End the sockets whose token expired more than the grace ago; how many."""
        now = self._clock()
        ended = 0
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                if conn.deadline < now and not conn.closing:
                    end_expired(conn)
                    ended += 1
        return ended

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(self._expiry_check_s)
            self.expire()

    def queued_bytes(self) -> int:
        """Bytes waiting in this node's send queues."""
        return sum(c.queued_bytes for conns in self._by_user.values() for c in conns)

    def subscribe(
        self, conn: Connection, channel_id: str, after_seq: int, known_last: int = 0
    ) -> None:
        """Deliver the channel's events after `after_seq` to this connection.

        Events up to `known_last` (read from the database) or already seen on the
        bus are replayed from the database first.
        """
        conn.subscribe(channel_id, after_seq)
        self._by_channel[channel_id].add(conn)
        # What the database said is committed counts as seen: catch-up compares with it.
        if known_last > self.published_seq.get(channel_id, 0):
            self.published_seq[channel_id] = known_last
            self._published_at[channel_id] = time.monotonic()
        if self.published_seq.get(channel_id, 0) > after_seq:
            conn.offer(Rewind(channel_id, after_seq))

    def unregister(self, conn: Connection) -> None:
        users = self._by_user.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self._by_user[conn.user_id]
        self._forget_login(conn)
        for channel_id in list(conn.last_sent):
            self._unroute(conn, channel_id)

    def _unroute(self, conn: Connection, channel_id: str) -> None:
        conns = self._by_channel.get(channel_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._by_channel[channel_id]

    def on_event(self, ev: Event) -> None:
        """Bus handler: pass events on in seq order, holding one that overtook its gap.

        With several nodes, an event committed on this node reaches the hub before an
        earlier one committed on another node comes through Redis. Passed on at once,
        every local listener would fill the gap from the database itself; held for a
        few milliseconds, the gap usually arrives and nobody reads. A gap still open
        after `reorder_ms` (a publish lost with its node) is filled by each listener.
        """
        ch = ev.channel_id
        if ev.seq > self.published_seq.get(ch, 0):
            self.published_seq[ch] = ev.seq
            self._published_at[ch] = time.monotonic()
        last = self._dispatched.get(ch)
        if self._reorder_s > 0 and last is not None and ev.seq > last + 1:
            self._held.setdefault(ch, {})[ev.seq] = ev
            if ch not in self._held_timers:
                loop = asyncio.get_running_loop()
                self._held_timers[ch] = loop.call_later(self._reorder_s, self._release, ch)
            return
        self._dispatch(ev)
        held = self._held.get(ch)
        while held and self._dispatched[ch] + 1 in held:
            self._dispatch(held.pop(self._dispatched[ch] + 1))
        if held is not None and not held:
            self._release(ch)

    def _release(self, channel_id: str) -> None:
        """Pass on whatever is held for the channel, in seq order."""
        timer = self._held_timers.pop(channel_id, None)
        if timer is not None:
            timer.cancel()
        held = self._held.pop(channel_id, {})
        for seq in sorted(held):
            self._dispatch(held[seq])

    def _dispatch(self, ev: Event) -> None:
        """Serialise the frame once and queue it for every listener."""
        ch = ev.channel_id
        if ev.seq > self._dispatched.get(ch, 0):
            self._dispatched[ch] = ev.seq
        text = frames.event_frame(ev)
        # The joining users' connections get the join marked, routed or not: a replay
        # may have ended a still-routed subscription, and the sender decides in
        # queue order.
        joining = {conn for user_id in ev.joined for conn in self._by_user.get(user_id, ())}
        if joining:
            self._by_channel[ch].update(joining)
        listeners = self._by_channel.get(ch)
        if not listeners:
            return
        nbytes = utf8_len(text)
        live = LiveEvent(ch, ev.seq, text, ev.created_at, nbytes=nbytes)
        leaving = set(ev.left)
        for conn in list(listeners):
            if conn in joining:
                conn.offer(LiveEvent(ch, ev.seq, text, ev.created_at, join=True, nbytes=nbytes))
            elif conn.user_id in leaving:
                conn.offer(LiveEvent(ch, ev.seq, text, ev.created_at, leave=True, nbytes=nbytes))
                self._unroute(conn, ch)
            else:
                conn.offer(live)
        self.delivered += len(listeners)

    def connection_count(self) -> int:
        """Open connections on this node."""
        return sum(len(conns) for conns in self._by_user.values())

    def followed(self) -> list[str]:
        """The channels some local connection follows."""
        return list(self._by_channel)

    def users(self) -> list[str]:
        """The users with a connection here."""
        return list(self._by_user)

    def missing_join(self, ev: Event) -> bool:
        """A user this event adds has a connection here not yet following the channel."""
        return any(
            ev.channel_id not in conn.last_sent
            for user_id in ev.joined
            for conn in self._by_user.get(user_id, ())
        )

    def catch_up(self, channel_id: str, last_seq: int) -> None:
        """The database is ahead of the bus: listeners fill up to it from the database."""
        if last_seq <= self.published_seq.get(channel_id, 0):
            return
        self.published_seq[channel_id] = last_seq
        self._published_at[channel_id] = time.monotonic()
        item = CatchUp(channel_id)
        for conn in list(self._by_channel.get(channel_id, ())):
            conn.offer(item)
        # The listeners now fill up to last_seq: what is held may go, and the bus
        # events the database is ahead of need not be waited for.
        self._dispatched[channel_id] = max(self._dispatched.get(channel_id, 0), last_seq)
        self._release(channel_id)

    def on_ephemeral(self, sig: Ephemeral) -> None:
        """Bus handler: typing and the like go to the other members' connections."""
        listeners = self._by_channel.get(sig.channel_id)
        if not listeners:
            return
        item = SendFrame(frames.dumps(frames.ephemeral(sig)))
        for conn in list(listeners):
            # A replay may have ended the subscription of a still-routed connection.
            if conn.user_id != sig.user_id and sig.channel_id in conn.last_sent:
                conn.offer(item)

    async def _heartbeat(self) -> None:
        frame = SendFrame(frames.dumps(frames.HEARTBEAT))
        while True:
            await asyncio.sleep(self._heartbeat_ms / 1000)
            for conn in self.connections:
                conn.offer(frame)
            self.prune(time.monotonic() - PUBLISHED_SEQ_RETAIN_S)

    def prune(self, before: float) -> None:
        """Forget the published seq of channels nobody here follows, quiet since `before`.

        It only guards the short window between a subscriber's database read and its
        subscription (bounded by the database timeout), so old entries serve nothing.
        """
        stale = [
            ch
            for ch, at in self._published_at.items()
            if at < before and ch not in self._by_channel
        ]
        for ch in stale:
            del self._published_at[ch]
            del self.published_seq[ch]
            self._dispatched.pop(ch, None)


def end_session(conn: Connection, code: str, message: str) -> None:
    """Send an error frame with `code`, then close 4401 with `code` as the reason."""
    metrics.WS_CLOSES.labels(code).inc()
    conn.end(protocol.CLOSE_UNAUTHORIZED, code, frames.error(code, message))


def end_expired(conn: Connection) -> None:
    """The socket's token expired and no fresh one came within the grace."""
    end_session(conn, "token_expired", "the access token expired; reconnect with a fresh one")
