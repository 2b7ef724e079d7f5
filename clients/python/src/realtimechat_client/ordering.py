"""Client-side gap detection and dedupe: deliver each channel's events once, in seq order."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BufferOverflow", "ChannelBuffer", "Gap", "OrderingBuffer"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs missing from a channel: after_seq+1 .. until_seq-1 have not arrived yet."""

    channel_id: str
    after_seq: int  # last seq delivered to the application
    until_seq: int  # lowest buffered seq, the first one past the hole


class BufferOverflow(Exception):
    """Too many events are waiting behind a hole; the caller should resync the channel."""

    def __init__(self, channel_id: str) -> None:
        super().__init__(channel_id)
        self.channel_id = channel_id

    def __str__(self) -> str:
        return f"ordering buffer overflow on channel {self.channel_id!r}"


class ChannelBuffer(Generic[T]):
    """Reorders and dedupes one channel's events by seq."""

    __slots__ = ("_channel_id", "_delivered", "_heap", "_items", "_max_buffered")

    def __init__(self, channel_id: str, delivered_seq: int = 0, max_buffered: int = 10_000) -> None:
        if delivered_seq < 0:
            raise ValueError(f"delivered_seq must be >= 0, got {delivered_seq}")
        if max_buffered < 0:
            raise ValueError(f"max_buffered must be >= 0, got {max_buffered}")
        self._channel_id = channel_id
        self._delivered = delivered_seq
        self._max_buffered = max_buffered
        # The dict answers "already buffered?" in O(1); the heap yields the lowest seq.
        self._items: dict[int, T] = {}
        self._heap: list[int] = []

    @property
    def channel_id(self) -> str:
        """The channel this buffer orders."""
        return self._channel_id

    @property
    def delivered_seq(self) -> int:
        """Highest seq handed to the application."""
        return self._delivered

    @property
    def pending(self) -> int:
        """Number of events buffered, waiting for a hole to fill."""
        return len(self._items)

    def offer(self, seq: int, item: T) -> list[T]:
        """Accept one event; return the events now deliverable, in seq order (may be empty).

        Duplicates (seq already delivered or already buffered) are dropped; the first copy wins.
        Raises BufferOverflow, leaving the buffer unchanged, when buffering the event would
        exceed max_buffered.
        """
        out: list[T] = []
        if seq > self._delivered and seq not in self._items:
            if seq == self._delivered + 1:
                self._delivered = seq
                out.append(item)
            else:
                if len(self._items) >= self._max_buffered:
                    raise BufferOverflow(self._channel_id)
                self._items[seq] = item
                heapq.heappush(self._heap, seq)
        # Drain on every call, not only after an in-order seq: reset() may have left the
        # head of the buffer contiguous, and this is how those events get released.
        heap = self._heap
        while heap and heap[0] == self._delivered + 1:
            self._delivered = heapq.heappop(heap)
            out.append(self._items.pop(self._delivered))
        return out

    def gap(self) -> Gap | None:
        """A Gap when something is buffered beyond delivered_seq+1, else None."""
        if not self._heap or self._heap[0] == self._delivered + 1:
            return None
        return Gap(self._channel_id, self._delivered, self._heap[0])

    def reset(self, delivered_seq: int) -> None:
        """Continue from delivered_seq after a resync, dropping buffered events at or below it.

        Nothing is delivered here: events above delivered_seq stay buffered, and any that are
        now contiguous come out of the next offer() call.
        """
        if delivered_seq < 0:
            raise ValueError(f"delivered_seq must be >= 0, got {delivered_seq}")
        self._delivered = delivered_seq
        if self._heap and self._heap[0] <= delivered_seq:
            self._items = {s: v for s, v in self._items.items() if s > delivered_seq}
            self._heap = sorted(self._items)  # a sorted list is a valid heap


class OrderingBuffer(Generic[T]):
    """Per-channel ChannelBuffers keyed by channel_id."""

    __slots__ = ("_channels", "_max_buffered")

    def __init__(
        self, cursors: Mapping[str, int] | None = None, max_buffered: int = 10_000
    ) -> None:
        self._max_buffered = max_buffered
        self._channels: dict[str, ChannelBuffer[T]] = {}
        for channel_id, delivered_seq in (cursors or {}).items():
            self._channels[channel_id] = ChannelBuffer(channel_id, delivered_seq, max_buffered)

    def _channel(self, channel_id: str) -> ChannelBuffer[T]:
        buf = self._channels.get(channel_id)
        if buf is None:
            buf = self._channels[channel_id] = ChannelBuffer(channel_id, 0, self._max_buffered)
        return buf

    def offer(self, channel_id: str, seq: int, item: T) -> list[T]:
        """Accept one event of a channel; return that channel's events now deliverable, in order.

        Raises BufferOverflow as ChannelBuffer.offer does.
        """
        return self._channel(channel_id).offer(seq, item)

    def gaps(self) -> list[Gap]:
        """Current holes across all channels, sorted by channel_id."""
        found = (self._channels[c].gap() for c in sorted(self._channels))
        return [g for g in found if g is not None]

    def cursor(self, channel_id: str) -> int:
        """Highest seq delivered on a channel; 0 for unknown channels."""
        buf = self._channels.get(channel_id)
        return 0 if buf is None else buf.delivered_seq

    def cursors(self) -> dict[str, int]:
        """Highest delivered seq of every known channel (a snapshot, safe to mutate)."""
        return {c: buf.delivered_seq for c, buf in self._channels.items()}

    def reset(self, channel_id: str, delivered_seq: int) -> None:
        """Continue a channel from delivered_seq after a resync; see ChannelBuffer.reset."""
        self._channel(channel_id).reset(delivered_seq)
