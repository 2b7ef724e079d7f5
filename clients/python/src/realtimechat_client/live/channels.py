"""The channel tracker of a live session: each channel's events once, in seq order, no gaps.

- **Reorder, dedupe, backfill.** Everything (live, replayed, paged) goes through one
  `ChannelBuffer` per channel (`realtimechat_client.ordering`), which drops what was seen by
  `(channel_id, seq)` and holds back what comes after a hole. A hole still open after
  `gap_grace_s` is backfilled over REST; a `resync` (or a full buffer) pages the channel.
- **Resume cursors.** Each channel's last seq taken in, with its epoch, is what a new
  connection's `auth` frame asks the server to go on from.
- **Epochs.** When a channel's epoch changes (its history was restored or rewritten), the
  channel continues from `min(our seq, the channel's last seq)` in the new epoch: seqs that
  both histories may share are not delivered twice, and nothing new is skipped.
- **Channels come and go.** A channel first seen through an event (`member.joined` or
  `channel.created` that adds us) starts just before that event. After our own
  `member.left` the channel is no longer followed until we join it again, except when
  the connection's `ready` says we are a member with later events (removed and added back
  while away): then the tracker asks the server to go on past that leave.
- **Tails are checked.** Every `tail_check_s` the channels' `last_seq`s are compared with
  what came in (one `GET /channels`), and a send's answer tells its seq: events that exist
  but never arrived live are backfilled, so a lost publication cannot hide at the end of a
  quiet channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

from realtimechat_client.backoff import Backoff
from realtimechat_client.client import ChatClient
from realtimechat_client.errors import ChatAPIError
from realtimechat_client.live.connection import Frame
from realtimechat_client.live.lifetime import Lifetime, wait_any
from realtimechat_client.live.stats import LiveStats
from realtimechat_client.models import ChannelView, Event
from realtimechat_client.options import ClientOptions, StartFrom
from realtimechat_client.ordering import BufferOverflow, ChannelBuffer

__all__ = ["ChannelTracker", "Deliver"]

log = logging.getLogger("realtimechat_client.live")

JOIN_EVENTS = ("member.joined", "channel.created")

Deliver = Callable[[Event, str | None], None]
"""Hands one event, with its channel's epoch, on to the application."""


class ChannelTracker:
    """Per channel: the reorder buffer, the epoch, whether we follow it, what is known to exist."""

    def __init__(
        self,
        client: ChatClient,
        options: ClientOptions,
        stats: LiveStats,
        lifetime: Lifetime,
        backoff: Backoff,
        *,
        start_from: StartFrom,
        deliver: Deliver,
        send_frame: Callable[[Frame], None],
        is_connected: Callable[[], bool],
    ) -> None:
        self._client = client
        self._opts = options
        self._stats = stats
        self._lifetime = lifetime
        self._backoff = backoff
        self.start_from: StartFrom = start_from
        self._deliver = deliver
        self._send_frame = send_frame  # on the current connection, if any
        self._is_connected = is_connected
        self.user_id: str | None = None
        self.channels: dict[str, dict[str, Any]] = {}  # from ready, plus channels joined since
        self._buffers: dict[str, ChannelBuffer[Event]] = {}
        self._epochs: dict[str, str | None] = {}
        self._left: set[str] = set()  # channels we are no longer a member of
        self._known_last: dict[str, int] = {}  # highest seq known to exist, per channel
        self._ready_last: dict[str, int] = {}  # last_seq per channel in the current ready
        self._gap_timers: dict[str, asyncio.TimerHandle] = {}
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self._backfill_again: set[str] = set()
        self._tail_checker: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def follow(self, channel_id: str, seq: int, epoch: str | None) -> None:
        """Follow `channel_id` from `seq` of `epoch` (a stored cursor)."""
        self._buffers[channel_id] = ChannelBuffer(channel_id, seq, self._opts.max_buffered)
        self._epochs[channel_id] = epoch

    def start(self) -> None:
        """Start checking the channels' tails (if the options ask for it)."""
        if self._opts.tail_check_s:
            self._tail_checker = asyncio.create_task(self._check_tails(), name="rtc-tails")

    def cancel(self) -> list[asyncio.Task[None]]:
        """Stop timers, backfills and tail checks; the tasks, to await."""
        for handle in self._gap_timers.values():
            handle.cancel()
        self._gap_timers.clear()
        tasks = list(self._backfills.values())
        if self._tail_checker is not None:
            tasks.append(self._tail_checker)
        for task in tasks:
            task.cancel()
        return tasks

    def cursors(self) -> dict[str, int]:
        """Highest seq taken in (delivered or queued for the application) per followed channel."""
        return {
            cid: buf.delivered_seq for cid, buf in self._buffers.items() if cid not in self._left
        }

    def resume_cursors(self) -> dict[str, Any]:
        """What a new connection's `auth` frame carries: seq (and epoch) per followed channel."""
        out: dict[str, Any] = {}
        for cid, buf in self._buffers.items():
            if cid in self._left:
                continue
            epoch = self._epochs.get(cid)
            out[cid] = (
                buf.delivered_seq if epoch is None else {"seq": buf.delivered_seq, "epoch": epoch}
            )
        return out

    # -- frames ----------------------------------------------------------------------------
    def on_ready(self, frame: Frame) -> Frame | None:
        """A connection's `ready`: its channels; a `resume` for those to rewind, or None."""
        self.user_id = str(frame["user_id"])
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
                    self._stats.epoch_changes += 1
                    buf.reset(min(buf.delivered_seq, last))
                self._epochs[cid] = epoch
        for cid in self._buffers:
            if cid not in listed:
                self._left.add(cid)
        self.channels = listed
        for cid in listed:
            if self._behind(cid):
                self._arm_gap_timer(cid)
        if rewind:
            return {"type": "resume", "cursors": rewind}
        return None

    def on_event(self, frame: Frame) -> None:
        """An `event` frame."""
        frame.pop("type", None)
        self._offer(cast(Event, frame))

    def on_resync(self, channel_id: str) -> None:
        """The server cannot replay `channel_id` from our cursor: page it over REST."""
        self._stats.resyncs += 1
        self._start_backfill(channel_id, resync=True)

    def on_cursor_refused(self, channel_id: str, code: object) -> None:
        """The server refused our cursor for `channel_id` (in `auth` or `resume`)."""
        if code == "not_found":
            self._left.add(channel_id)  # not a member any more
        else:  # a cursor the server could not use: page the channel instead
            self._start_backfill(channel_id, resync=True)

    def note_last(self, cid: str, seq: int) -> None:
        """Event `seq` of `cid` exists (a send answer, a channel listing): expect it."""
        if seq > self._known_last.get(cid, 0):
            self._known_last[cid] = seq
        if cid not in self._backfills and self._behind(cid):
            self._arm_gap_timer(cid)

    # -- taking events in --------------------------------------------------------------------
    def _offer(self, ev: Event) -> None:
        """Take in one event (live, replayed or paged) and deliver what became contiguous."""
        self._stats.events_received += 1
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
            self._stats.resyncs += 1
            self._start_backfill(cid, resync=True)
            return
        epoch = self._epochs.get(cid)
        for item in ready:
            self._deliver(item, epoch)
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
        epoch = self._epochs.get(cid)
        cursor: Any = seq if epoch is None else {"seq": seq, "epoch": epoch}
        self._send_frame({"type": "resume", "cursors": {cid: cursor}})

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

    # -- filling holes over REST ---------------------------------------------------------------
    def _arm_gap_timer(self, cid: str) -> None:
        """Backfill `cid` over REST if it is still behind, with no progress, after a grace."""
        buf = self._buffers.get(cid)
        if cid in self._gap_timers or self._lifetime.closed or buf is None:
            return
        loop = asyncio.get_running_loop()
        armed_at = buf.delivered_seq

        def fire() -> None:
            self._gap_timers.pop(cid, None)
            if self._lifetime.closed or cid in self._backfills or not self._behind(cid):
                return
            if self._buffers[cid].delivered_seq > armed_at:
                self._arm_gap_timer(cid)  # still coming in (a replay): give it time
                return
            self._stats.gap_backfills += 1
            self._start_backfill(cid, resync=False)

        self._gap_timers[cid] = loop.call_later(self._opts.gap_grace_s, fire)

    def _start_backfill(self, cid: str, *, resync: bool) -> None:
        if self._lifetime.closed or cid in self._left:
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
            if self._lifetime.closed:
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
        life = self._lifetime
        while not life.ended.is_set() and cid not in self._left:
            buf = self._buffers[cid]
            try:
                if not checked_epoch:
                    self._check_epoch(cid, buf, await self._client.get_channel(cid))
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
                await wait_any(life.ended.wait(), limit_s=self._backoff.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self._stats.pages_fetched += 1
            for ev in page["events"]:
                self._offer(ev)
            if not page["has_more"] or not page["events"]:
                # The end of the channel as the server has it now: expect nothing beyond
                # (a stale expectation, e.g. from before an epoch change, must not loop).
                end = max([buf.delivered_seq] + [int(e["seq"]) for e in page["events"]])
                if self._known_last.get(cid, 0) > end:
                    self._known_last[cid] = end
                return

    def _check_epoch(self, cid: str, buf: ChannelBuffer[Event], channel: Mapping[str, Any]) -> None:
        epoch = channel.get("epoch")
        known = self._epochs.get(cid)
        if known is not None and epoch is not None and known != epoch:
            self._stats.epoch_changes += 1
            buf.reset(min(buf.delivered_seq, int(channel["last_seq"])))
        self._epochs[cid] = epoch

    async def _check_tails(self) -> None:
        """Every tail_check_s, compare each channel's last_seq with what we have.

        Live delivery is at-least-once only if every event is published; a missed
        publication at the tail of a quiet channel would otherwise go unnoticed until the
        channel's next event.
        """
        interval = self._opts.tail_check_s
        assert interval
        life = self._lifetime
        while not life.ended.is_set():
            await wait_any(life.ended.wait(), limit_s=interval)
            if life.ended.is_set() or not self._is_connected():
                continue
            try:
                listed: list[ChannelView] = await self._client.my_channels()
            except ChatAPIError as exc:
                log.debug("tail check failed: %s", exc)
                continue
            for ch in listed:
                cid, last = ch.get("id"), ch.get("last_seq")
                if cid in self._buffers and isinstance(last, int):
                    self.note_last(cid, last)
