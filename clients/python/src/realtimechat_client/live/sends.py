"""The send queue of a live session: every send acknowledged once, never stored twice.

A send fixes its `client_msg_id` and goes out over the WebSocket while a connection is up,
over `POST /api/v1/messages` while not, again and again with the same id, until a
`send_ok`, 201 or 200 answers it: the server stores a message once per (sender,
client_msg_id), so a retry is always safe. A second `send()` with the same id joins the
first; with the same id and another body it is refused at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from websockets.exceptions import ConnectionClosed

from realtimechat_client import codec
from realtimechat_client.api.messages import new_client_msg_id
from realtimechat_client.backoff import Backoff
from realtimechat_client.client import ChatClient
from realtimechat_client.errors import ChatAPIError, session_closed
from realtimechat_client.live.connection import ConnectionLoop, Frame
from realtimechat_client.live.lifetime import Lifetime, wait_any
from realtimechat_client.live.stats import LiveStats
from realtimechat_client.models import Message
from realtimechat_client.options import ClientOptions

__all__ = ["PendingSend", "SendQueue"]


@dataclass
class PendingSend:
    """A send not yet acknowledged; `future` is answered by `send_ok` or an error frame."""

    channel_id: str
    body: str
    attachments: list[Any] | None
    future: asyncio.Future[Message]
    task: asyncio.Task[Message] | None = None


class SendQueue:
    """The pending sends of a session, each retried by its own task until answered."""

    def __init__(
        self,
        client: ChatClient,
        connection: ConnectionLoop,
        options: ClientOptions,
        stats: LiveStats,
        lifetime: Lifetime,
        backoff: Backoff,
    ) -> None:
        self._client = client
        self._connection = connection
        self._opts = options
        self._stats = stats
        self._lifetime = lifetime
        self._backoff = backoff
        self.pending: dict[str, PendingSend] = {}

    async def send(
        self,
        channel_id: str,
        body: str,
        client_msg_id: str | None = None,
        *,
        attachments: list[Any] | None = None,
    ) -> Message:
        """Send until acknowledged; the message as stored (see `LiveSession.send`)."""
        self._lifetime.raise_if_over()
        cmid = client_msg_id or new_client_msg_id()
        pending = self.pending.get(cmid)
        if pending is not None and (pending.channel_id, pending.body) != (channel_id, body):
            raise ChatAPIError(
                422,
                "idempotency_key_reused",
                f"client_msg_id {cmid!r} is being sent with another channel or body",
            )
        if pending is None:
            pending = self._start(cmid, channel_id, body, attachments)
        assert pending.task is not None
        deadline = self._opts.send_deadline_s
        try:
            return await asyncio.wait_for(asyncio.shield(pending.task), deadline)
        except TimeoutError:
            pending.task.cancel()
            raise ChatAPIError(
                0, "send_timeout", f"no acknowledgement within {deadline} s"
            ) from None
        except asyncio.CancelledError:
            if pending.task.cancelled() and self._lifetime.closed:
                raise session_closed("the live session closed") from None
            raise

    def _start(
        self, cmid: str, channel_id: str, body: str, attachments: list[Any] | None
    ) -> PendingSend:
        loop = asyncio.get_running_loop()
        pending = PendingSend(channel_id, body, attachments, loop.create_future())
        self.pending[cmid] = pending
        task = asyncio.create_task(self._send_loop(cmid, pending), name=f"rtc-send-{cmid}")
        pending.task = task

        def done(t: asyncio.Task[Message]) -> None:
            if self.pending.get(cmid) is pending:
                del self.pending[cmid]
            if not t.cancelled():
                t.exception()  # retrieved: a caller that went away leaves no warning

        task.add_done_callback(done)
        return pending

    # -- answers ---------------------------------------------------------------------------
    def on_send_ok(self, frame: Frame) -> None:
        """A `send_ok` frame: the send it names is done."""
        pending = self.pending.get(str(frame.get("client_msg_id")))
        if pending is not None and not pending.future.done():
            pending.future.set_result(cast(Message, frame["message"]))

    def on_error(self, client_msg_id: str, frame: Frame) -> None:
        """An error frame answering the send `client_msg_id`."""
        pending = self.pending.get(client_msg_id)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(ChatAPIError.from_frame(frame))

    def fail_all(self, exc: BaseException) -> None:
        """The session ended: every send waiting for an answer gets `exc`."""
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(exc)

    def cancel(self) -> list[asyncio.Task[Message]]:
        """Cancel every send's task (the session closes); the tasks, to await."""
        tasks = [p.task for p in self.pending.values() if p.task is not None]
        for task in tasks:
            task.cancel()
        return tasks

    # -- one send ----------------------------------------------------------------------------
    async def _send_loop(self, cmid: str, p: PendingSend) -> Message:
        frame: Frame = {
            "type": "send",
            "channel_id": p.channel_id,
            "client_msg_id": cmid,
            "body": p.body,
        }
        if p.attachments:
            frame["attachments"] = p.attachments
        text = codec.dumps(frame)
        attempt = 0
        loop = asyncio.get_running_loop()
        life = self._lifetime
        while True:
            life.raise_if_over("the live session closed")
            if p.future.done():
                err = p.future.exception()
                if err is None:
                    return p.future.result()
                p.future = loop.create_future()
            conn = self._connection.current
            if conn is not None and conn.usable:
                try:
                    await conn.ws.send(text)
                    self._stats.sends_ws += 1
                except (ConnectionClosed, OSError):
                    await wait_any(conn.lost.wait(), life.ended.wait(), limit_s=1.0)
                    continue
                await wait_any(
                    p.future,
                    conn.lost.wait(),
                    life.ended.wait(),
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
                        delay = self._backoff.delay(attempt)
                    attempt += 1
                    await wait_any(life.ended.wait(), limit_s=delay)
                    continue
                raise err
            # Not connected: the same send over REST (retried inside, bounded).
            try:
                self._stats.sends_rest += 1
                return await self._client.send_message(
                    p.channel_id, p.body, cmid, attachments=p.attachments
                )
            except ChatAPIError as exc:
                if not exc.transient:
                    raise
            # Wait for a connection, or for the next REST attempt.
            await wait_any(
                self._connection.connected.wait(),
                life.ended.wait(),
                limit_s=self._backoff.delay(attempt),
            )
            attempt += 1
