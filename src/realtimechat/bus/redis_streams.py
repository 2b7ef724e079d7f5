"""The scale-out bus: every node XADDs what it commits to one Redis stream and XREADs the rest."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from realtimechat.bus.base import Bus, ConfirmedHandler, Ephemeral, EphemeralHandler, EventHandler
from realtimechat.domain.errors import Unavailable
from realtimechat.domain.models import Event
from realtimechat.observability import metrics
from realtimechat.settings import RedisSettings
from realtimechat_client.backoff import Backoff

log = logging.getLogger(__name__)

READ_COUNT = 500  # entries per XREAD
BATCH_MAX = 500  # entries per XADD pipeline
RETRY_CAP_S = 2.0  # an outage is noticed as over within this after Redis is back

Fields = dict[FieldT, EncodableT]
Entry = tuple[Fields, Event | None]  # the event, to confirm once XADDed; None for a signal


def _event_fields(node: bytes, ev: Event) -> Fields:
    # `data` is already JSON text: stored as its own field it crosses the bus byte for byte.
    meta = orjson.dumps([ev.channel_id, ev.seq, ev.type, ev.created_at, ev.joined, ev.left])
    return {b"n": node, b"e": meta, b"d": ev.data}


def _signal_fields(node: bytes, sig: Ephemeral) -> Fields:
    return {b"n": node, b"s": orjson.dumps([sig.channel_id, sig.user_id, sig.type])}


def _decode(fields: dict[bytes, bytes]) -> Event | Ephemeral:
    if b"e" in fields:
        channel_id, seq, type_, created_at, joined, left = orjson.loads(fields[b"e"])
        return Event(channel_id, seq, type_, fields[b"d"], created_at, tuple(joined), tuple(left))
    channel_id, user_id, type_ = orjson.loads(fields[b"s"])
    return Ephemeral(channel_id, user_id, type_)


def _id_key(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or b"0")


def _backoff(retry_s: float) -> Backoff:
    # Half jitter keeps the nodes from reconnecting in lockstep after a Redis restart.
    return Backoff(retry_s, RETRY_CAP_S, jitter="half")


class RedisStreamsBus:
    """Fans out through one Redis stream shared by all nodes.

    `publish` delivers to this node's subscribers at once, in the caller's order,
    whether Redis is up or not, and queues the entries for a single publisher task,
    so one node's events keep their publish order on the stream. The reader task
    delivers the entries of the other nodes in stream order. Events of different
    nodes may interleave in any order, an entry may be lost (queue full, Redis
    refused it) or, after a retried XADD whose reply was lost, arrive twice:
    connections drop seqs they already sent and fill holes from the database,
    which is the truth. While Redis is unreachable `health()` is degraded and the
    tasks retry with backoff until it answers again or `close()`.

    Events that did reach the stream go to the `on_confirmed` handlers (the outbox
    acks); the outbox relay republishes the others with `publish_confirmed`.
    """

    needs_outbox = True

    def __init__(
        self, url: str, settings: RedisSettings, *, node_id: str | None = None, read: bool = True
    ) -> None:
        """`read=False`: publish only (the worker's relay), never read the stream."""
        self._read = read
        self.node_id = node_id or secrets.token_hex(6)
        self._node = self.node_id.encode()
        self._url = url
        self._settings = settings
        self._subscribers: list[tuple[EventHandler, EphemeralHandler]] = []
        self._confirmed: list[ConfirmedHandler] = []
        self._queue: asyncio.Queue[Entry] = asyncio.Queue(settings.publish_queue)
        self._client: Redis | None = None
        self._reader: Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_id: bytes | None = None  # None: "$", resolved once Redis answers
        self._errors: dict[str, str] = {}  # task -> reason; any entry means degraded
        self._dropping = False
        self.published = 0  # entries XADDed
        self.received = 0  # entries delivered from other nodes
        self.dropped = 0  # entries that never reached the stream

    @property
    def queued(self) -> int:
        """Entries waiting for the publisher (at most settings.publish_queue)."""
        return self._queue.qsize()

    def subscribe(self, on_event: EventHandler, on_ephemeral: EphemeralHandler) -> None:
        """Register the node's handlers; they are called on the event loop and must not block."""
        self._subscribers.append((on_event, on_ephemeral))

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver committed events locally now and queue them for the other nodes."""
        for ev in events:
            self._deliver(ev)
            self._enqueue((_event_fields(self._node, ev), ev))
            metrics.EVENTS_PUBLISHED.inc()

    async def publish_confirmed(self, events: Sequence[Event]) -> None:
        """Deliver locally and XADD now, bypassing the queue; raise Unavailable on failure."""
        for ev in events:
            self._deliver(ev)
        if self._client is None:
            raise Unavailable(detail="redis bus is not running")
        try:
            await self._xadd(self._client, [_event_fields(self._node, ev) for ev in events])
        except Exception as exc:
            raise Unavailable(detail=f"redis publish failed: {type(exc).__name__}") from exc
        self.published += len(events)

    def on_confirmed(self, handler: ConfirmedHandler) -> None:
        """Call `handler` with the events of each batch that `publish` got onto the stream."""
        self._confirmed.append(handler)

    def publish_ephemeral(self, signal: Ephemeral) -> None:
        """Deliver a typing-like signal locally now and queue it for the other nodes."""
        self._deliver(signal)
        self._enqueue((_signal_fields(self._node, signal), None))

    def health(self) -> tuple[str, str | None]:
        """("ok", None) while Redis answers; ("degraded", reason) while it does not."""
        if self._client is None:
            return "degraded", "redis bus not running"
        reason = next(iter(self._errors.values()), None)
        return ("ok", None) if reason is None else ("degraded", reason)

    async def ping(self) -> None:
        """PING Redis (bounded by the client's timeout)."""
        if self._client is None:
            raise Unavailable(detail="redis bus is not running")
        await self._client.ping()

    async def start(self) -> None:
        """Create the clients, pin the start position and start the tasks; never raises."""
        if self._client is not None:
            return
        s = self._settings
        # One attempt per call, so a call costs at most timeout_s: our loops do the retrying.
        options: dict[str, Any] = {
            "socket_connect_timeout": s.timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "protocol": 2,  # the reply shapes _read_loop expects
        }
        self._client = client = Redis.from_url(self._url, socket_timeout=s.timeout_s, **options)
        # XREAD BLOCK keeps its reply back for up to block_ms by design.
        reader_timeout = s.timeout_s + s.block_ms / 1000
        self._reader = reader = Redis.from_url(self._url, socket_timeout=reader_timeout, **options)
        try:
            # Resolve "$" now: events published after start() returns reach this node.
            self._last_id = await self._newest_id(client)
        except Exception as exc:
            self._fail("read", exc)
        self._tasks = [
            asyncio.create_task(self._publish_loop(client), name=f"bus-publish-{self.node_id}")
        ]
        if self._read:
            self._tasks.append(
                asyncio.create_task(
                    self._read_loop(client, reader), name=f"bus-read-{self.node_id}"
                )
            )

    async def close(self) -> None:
        """Stop the tasks and close the clients; queued entries are abandoned. Idempotent."""
        tasks, self._tasks = self._tasks, []
        # Python 3.11's asyncio.wait_for, which redis-py awaits inside commands, swallows a
        # cancellation that races with the end of a write: cancel until the tasks have ended.
        while tasks:
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=0.1)
            tasks = list(pending)
        clients = [c for c in (self._client, self._reader) if c is not None]
        self._client = self._reader = None
        for client in clients:
            try:
                await client.aclose()
            except Exception:
                log.debug("closing a redis client failed", exc_info=True)

    def _deliver(self, item: Event | Ephemeral) -> None:
        for on_event, on_ephemeral in self._subscribers:
            try:
                if isinstance(item, Event):
                    on_event(item)
                else:
                    on_ephemeral(item)
            except Exception:  # one bad subscriber must not starve the others
                log.exception("bus subscriber failed")

    def _enqueue(self, entry: Entry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1
            if not self._dropping:  # once per episode, not once per event
                self._dropping = True
                log.warning(
                    "redis bus publish queue full (%d), dropping; the outbox relay resends",
                    self._settings.publish_queue,
                )

    async def _newest_id(self, client: Redis) -> bytes:
        """The id of the stream's newest entry; 0-0 for an empty or missing stream."""
        newest = await client.xrevrange(self._settings.stream, count=1)
        return cast(bytes, newest[0][0]) if newest else b"0-0"

    async def _read_loop(self, client: Redis, reader: Redis) -> None:
        s = self._settings
        backoff, attempt = _backoff(s.retry_s), 0
        verify = False  # after an error or an idle read: has the stream gone back in time?
        while True:
            try:
                if self._last_id is None:
                    self._last_id = await self._newest_id(client)
                elif verify and _id_key(await self._newest_id(client)) < _id_key(self._last_id):
                    # A Redis that restarted without persistence (clock behind, or a fresh
                    # stream) writes ids below ours: all of its stream is news to us.
                    log.warning("redis stream %s is behind our position; reading it anew", s.stream)
                    self._last_id = b"0-0"
                streams: dict[KeyT, StreamIdT] = {s.stream: self._last_id}
                reply = await reader.xread(streams, count=READ_COUNT, block=s.block_ms)
            except Exception as exc:
                self._fail("read", exc)
                await asyncio.sleep(backoff.delay(attempt))
                attempt, verify = attempt + 1, True
                continue
            self._ok("read")
            attempt, verify = 0, not reply
            # protocol=2: a list of [stream name, [(id, fields), ...]].
            for _stream, entries in cast("list[list[Any]]", reply or []):
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    # A stream id starts with the XADD time in ms: the reader's delay.
                    added_ms = int(entry_id.split(b"-", 1)[0])
                    metrics.BUS_CONSUMER_LAG.set(max(0.0, time.time() - added_ms / 1000))
                    if fields.get(b"n") != self._node:  # our own entries went out locally
                        self._receive(entry_id, fields)

    def _receive(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            item = _decode(fields)
        except Exception:  # a malformed entry must not stop the stream
            log.exception("undecodable redis bus entry %r", entry_id)
            return
        self.received += 1
        self._deliver(item)

    async def _publish_loop(self, client: Redis) -> None:
        s = self._settings
        backoff, attempt = _backoff(s.retry_s), 0
        batch: list[Entry] = []  # kept across connection errors: at most one batch extra
        while True:
            if not batch:
                batch.append(await self._queue.get())
                while len(batch) < BATCH_MAX and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
            try:
                await self._xadd(client, [fields for fields, _ in batch])
            except Exception as exc:
                self._fail("publish", exc)
                if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
                    # Redis answered and refused (OOM, wrong type): the same batch would fail again.
                    self.dropped += len(batch)
                    batch = []
                await asyncio.sleep(backoff.delay(attempt))
                attempt += 1
                continue
            self.published += len(batch)
            self._confirm([ev for _, ev in batch if ev is not None])
            batch = []
            self._dropping = False
            self._ok("publish")
            attempt = 0

    async def _xadd(self, client: Redis, entries: list[Fields]) -> None:
        s = self._settings
        async with client.pipeline(transaction=False) as pipe:
            for fields in entries:
                pipe.xadd(s.stream, fields, maxlen=s.stream_maxlen, approximate=True)
            await pipe.execute()

    def _confirm(self, events: list[Event]) -> None:
        for handler in self._confirmed if events else ():
            try:
                handler(events)
            except Exception:  # the relay resends what is not acknowledged: no loss
                log.exception("bus confirmation handler failed")

    def _fail(self, task: str, exc: BaseException) -> None:
        if task not in self._errors:  # log the transition, not every retry
            log.warning(
                "redis bus %s failed, retrying until it answers: %s: %s",
                task,
                type(exc).__name__,
                exc,
            )
        self._errors[task] = f"redis {task} failed: {type(exc).__name__}"

    def _ok(self, task: str) -> None:
        if self._errors.pop(task, None) is not None:
            log.info("redis bus %s recovered", task)


_: type[Bus] = RedisStreamsBus
