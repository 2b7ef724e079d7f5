"""A live session: every channel's events exactly once, in seq order, whatever the network does.

```python
async with LiveSession(client, FileCursorStore("cursors.json")) as live:
    await live.send(channel_id, "hello")           # idempotent, retried until acknowledged
    async for event in live.events():              # {channel_id, seq, event, data, created_at}
        ...
```

Three parts keep the promise, and this class joins them and hands events out:

- the connection loop (`live/connection.py`): one connection at a time, authenticated,
  re-authenticated before its token expires, watched for silence, reconnected with
  backoff, resumed from the cursors;
- the channel tracker (`live/channels.py`): reorder and dedupe per channel, epochs,
  channels joined and left, gaps and tails backfilled over REST;
- the send queue (`live/sends.py`): sends retried with one `client_msg_id` over the
  WebSocket or REST until acknowledged.

Cursors are saved for delivered events only: a channel's cursor in the store moves when one
of its events is handed to the application (returned by `next_event()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from realtimechat_client.backoff import Backoff
from realtimechat_client.client import ChatClient
from realtimechat_client.cursors import CursorStore, MemoryCursorStore
from realtimechat_client.errors import ChatAPIError, session_closed
from realtimechat_client.live.channels import ChannelTracker
from realtimechat_client.live.connection import ConnectionLoop, Frame
from realtimechat_client.live.lifetime import Lifetime, wait_any
from realtimechat_client.live.sends import SendQueue
from realtimechat_client.live.stats import LiveStats
from realtimechat_client.models import Event, Message
from realtimechat_client.options import StartFrom

__all__ = ["LiveSession"]

log = logging.getLogger("realtimechat_client.live")


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
        opts = client.options
        self.store: CursorStore = cursor_store if cursor_store is not None else MemoryCursorStore()
        self.stats = LiveStats()
        self._lifetime = Lifetime()
        self._out: asyncio.Queue[tuple[Event, str | None] | _Stop] = asyncio.Queue()
        backoff = Backoff(opts.reconnect_base_s, opts.reconnect_cap_s, rng=client.transport.rng)
        self._connection = ConnectionLoop(
            client.transport, opts, self.stats, self._lifetime, self, backoff
        )
        self._tracker = ChannelTracker(
            client,
            opts,
            self.stats,
            self._lifetime,
            backoff,
            start_from=start_from or opts.start_from,
            deliver=self._deliver,
            send_frame=self._connection.send_soon,
            is_connected=self._connection.connected.is_set,
        )
        self._sends = SendQueue(client, self._connection, opts, self.stats, self._lifetime, backoff)
        self._runner: asyncio.Task[None] | None = None

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
            self._tracker.follow(channel_id, cursor.seq, cursor.epoch)
        self._runner = asyncio.create_task(self._run(), name="rtc-live")
        self._tracker.start()

    async def aclose(self) -> None:
        """Stop: close the connection, fail unfinished sends, flush the cursor store."""
        if self._lifetime.closed:
            return
        self._lifetime.close()
        tasks: list[asyncio.Task[Any]] = []
        if self._runner is not None:
            self._runner.cancel()
            tasks.append(self._runner)
        tasks.extend(self._tracker.cancel())
        tasks.extend(self._connection.tasks())
        tasks.extend(self._sends.cancel())
        for task in tasks:
            task.cancel()
        await self._connection.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._out.put_nowait(_STOP)
        self.store.close()

    @property
    def connected(self) -> bool:
        """A connection is up and past `ready`."""
        return self._connection.connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until a connection is up and past `ready` (bound it with asyncio.timeout)."""
        life = self._lifetime
        life.raise_if_failed()
        await wait_any(self._connection.connected.wait(), life.ended.wait(), limit_s=None)
        life.raise_if_failed()
        if not self.connected:
            raise session_closed()

    @property
    def start_from(self) -> StartFrom:
        """Where channels without a cursor start: their last seq, or seq 0."""
        return self._tracker.start_from

    @property
    def user_id(self) -> str | None:
        """Whose session this is (known from the first `ready`)."""
        return self._tracker.user_id

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        """The channels followed, as the last `ready` (or their join event) described them."""
        return self._tracker.channels

    @property
    def heartbeat_ms(self) -> int | None:
        """The server's heartbeat interval, from `ready`."""
        return self._connection.heartbeat_ms

    def cursors(self) -> dict[str, int]:
        """Highest seq taken in (delivered or queued for the application) per followed channel."""
        return self._tracker.cursors()

    # -- the application side -------------------------------------------------------------
    async def next_event(self) -> Event:
        """The next event, in seq order within its channel; saves the channel's cursor.

        Raises ChatAPIError `session_closed` once the session is closed and drained, or the
        error that ended it.
        """
        item = await self._out.get()
        if isinstance(item, _Stop):
            self._out.put_nowait(item)  # keep waking other readers
            self._lifetime.raise_if_failed()
            raise session_closed()
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
    ) -> Message:
        """Send a message; returns it as the server stored it.

        Over the WebSocket while connected, over REST while not, retried with the same
        `client_msg_id` until acknowledged: the server stores it once. Raises ChatAPIError
        for a refusal (not a member, validation, same id with another body, …), and
        `send_timeout` if `send_deadline_s` passes first (a later retry with the same id is
        still safe). Cancelling the caller does not stop the send; closing the session does.
        """
        msg = await self._sends.send(channel_id, body, client_msg_id, attachments=attachments)
        seq = msg.get("seq")
        if isinstance(seq, int):
            self._tracker.note_last(str(msg.get("channel_id", channel_id)), seq)
        return msg

    # -- what the connection hands over (FrameListener) -------------------------------------
    def resume_cursors(self) -> dict[str, Any]:
        return self._tracker.resume_cursors()

    def on_ready(self, frame: Frame) -> Frame | None:
        return self._tracker.on_ready(frame)

    def on_frame(self, frame: Frame) -> None:
        kind = frame.get("type")
        if kind == "event":
            self._tracker.on_event(frame)
        elif kind == "send_ok":
            self._sends.on_send_ok(frame)
        elif kind == "resync":
            self._tracker.on_resync(str(frame["channel_id"]))
        elif kind == "error":
            self._on_error(frame)

    def _on_error(self, frame: Frame) -> None:
        ref = frame.get("ref")
        cmid = frame.get("client_msg_id")
        if ref == "send" and isinstance(cmid, str):
            self._sends.on_error(cmid, frame)
            return
        channel_id = frame.get("channel_id")
        if ref in ("auth", "resume") and isinstance(channel_id, str):
            self._tracker.on_cursor_refused(channel_id, frame.get("code"))
            return
        log.info("live session: server error frame %s", frame)

    # -- inside --------------------------------------------------------------------------------
    def _deliver(self, event: Event, epoch: str | None) -> None:
        self._out.put_nowait((event, epoch))

    async def _run(self) -> None:
        try:
            await self._connection.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the session cannot go on: tell the application
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        log.warning("live session ended: %r", exc)
        self._lifetime.fail(exc)
        self._sends.fail_all(exc)
        self._out.put_nowait(_STOP)
