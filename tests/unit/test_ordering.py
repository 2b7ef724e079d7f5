"""Tests for client-side event ordering: dedupe, reordering, gap reports, resets, overflow."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtimechat_client.ordering import BufferOverflow, ChannelBuffer, Gap, OrderingBuffer

# --- examples -------------------------------------------------------------------------------


def test_in_order_delivers_immediately() -> None:
    buf: ChannelBuffer[str] = ChannelBuffer("c")
    assert buf.offer(1, "a") == ["a"]
    assert buf.offer(2, "b") == ["b"]
    assert buf.delivered_seq == 2
    assert buf.pending == 0
    assert buf.gap() is None


def test_duplicates_are_dropped() -> None:
    buf: ChannelBuffer[str] = ChannelBuffer("c")
    assert buf.offer(1, "a") == ["a"]
    assert buf.offer(1, "a again") == []
    assert buf.offer(3, "c") == []
    assert buf.offer(3, "c again") == []
    assert buf.pending == 1
    # The first copy of a buffered seq is the one delivered.
    assert buf.offer(2, "b") == ["b", "c"]


def test_out_of_order_is_reordered() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c")
    assert buf.offer(3, 3) == []
    assert buf.offer(2, 2) == []
    assert buf.offer(1, 1) == [1, 2, 3]
    assert buf.pending == 0


def test_hole_then_fill() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c")
    assert buf.offer(1, 1) == [1]
    assert buf.offer(4, 4) == []
    assert buf.offer(6, 6) == []
    assert buf.gap() == Gap("c", after_seq=1, until_seq=4)
    assert buf.offer(2, 2) == [2]
    assert buf.gap() == Gap("c", after_seq=2, until_seq=4)
    assert buf.offer(3, 3) == [3, 4]
    assert buf.gap() == Gap("c", after_seq=4, until_seq=6)
    assert buf.offer(5, 5) == [5, 6]
    assert buf.gap() is None
    assert buf.delivered_seq == 6


def test_starting_cursor() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c", delivered_seq=10)
    assert buf.offer(10, 10) == []
    assert buf.offer(12, 12) == []
    assert buf.gap() == Gap("c", after_seq=10, until_seq=12)
    assert buf.offer(11, 11) == [11, 12]


def test_reset_drops_stale_and_continues() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c")
    buf.offer(1, 1)
    for seq in (3, 5, 8):
        buf.offer(seq, seq)
    buf.reset(6)
    assert buf.delivered_seq == 6
    assert buf.pending == 1
    assert buf.gap() == Gap("c", after_seq=6, until_seq=8)
    assert buf.offer(5, 5) == []
    assert buf.offer(7, 7) == [7, 8]


def test_reset_leaving_contiguous_head_releases_on_next_offer() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c")
    for seq in (3, 4, 6):
        buf.offer(seq, seq)
    buf.reset(2)
    assert buf.gap() is None  # 3 is buffered: nothing is missing before it
    # A re-sent copy (e.g. from backfill) is a duplicate, yet it releases the buffered run.
    assert buf.offer(3, 99) == [3, 4]
    assert buf.gap() == Gap("c", after_seq=4, until_seq=6)


def test_reset_can_rewind() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("c")
    buf.offer(1, 1)
    buf.offer(2, 2)
    buf.reset(0)
    assert buf.offer(1, 1) == [1]


def test_overflow_raises_and_leaves_buffer_unchanged() -> None:
    buf: ChannelBuffer[int] = ChannelBuffer("chan-7", max_buffered=2)
    buf.offer(2, 2)
    buf.offer(3, 3)
    with pytest.raises(BufferOverflow) as info:
        buf.offer(5, 5)
    assert info.value.channel_id == "chan-7"
    assert buf.pending == 2
    # Duplicates and in-order events never overflow.
    assert buf.offer(3, 3) == []
    assert buf.offer(1, 1) == [1, 2, 3]


def test_negative_arguments_rejected() -> None:
    with pytest.raises(ValueError, match="delivered_seq"):
        ChannelBuffer("c", delivered_seq=-1)
    with pytest.raises(ValueError, match="max_buffered"):
        ChannelBuffer("c", max_buffered=-1)
    with pytest.raises(ValueError, match="delivered_seq"):
        ChannelBuffer("c").reset(-1)


def test_ordering_buffer_keeps_channels_apart() -> None:
    ob: OrderingBuffer[str] = OrderingBuffer({"a": 5})
    assert ob.cursor("a") == 5
    assert ob.cursor("nope") == 0
    assert ob.offer("a", 7, "a7") == []
    assert ob.offer("b", 2, "b2") == []
    assert ob.offer("b", 1, "b1") == ["b1", "b2"]
    assert ob.gaps() == [Gap("a", after_seq=5, until_seq=7)]
    assert ob.offer("a", 6, "a6") == ["a6", "a7"]
    assert ob.gaps() == []
    cursors = ob.cursors()
    assert cursors == {"a": 7, "b": 2}
    cursors["a"] = 0  # a snapshot: mutating it must not touch the buffer
    assert ob.cursor("a") == 7
    ob.reset("c", 3)
    assert ob.cursor("c") == 3
    assert ob.offer("c", 4, "c4") == ["c4"]


def test_ordering_buffer_overflow_names_channel() -> None:
    ob: OrderingBuffer[int] = OrderingBuffer(max_buffered=1)
    ob.offer("x", 3, 3)
    with pytest.raises(BufferOverflow) as info:
        ob.offer("x", 4, 4)
    assert info.value.channel_id == "x"
    assert ob.offer("y", 3, 3) == []  # other channels have their own budget


# --- properties -----------------------------------------------------------------------------


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    """(cursor, n, seqs): a permutation of 1..n with duplicates inserted at random places."""
    n = draw(st.integers(min_value=0, max_value=60))
    cursor = draw(st.one_of(st.just(0), st.integers(min_value=0, max_value=n)))
    seqs = draw(st.permutations(range(1, n + 1)))
    if n:
        dups = draw(st.lists(st.integers(min_value=1, max_value=n), max_size=n))
        for dup in dups:
            seqs.insert(draw(st.integers(min_value=0, max_value=len(seqs))), dup)
    return cursor, n, seqs


@settings(max_examples=200, deadline=None)
@given(deliveries())
def test_property_exactly_once_in_order_with_exact_gaps(case: tuple[int, int, list[int]]) -> None:
    cursor, n, seqs = case
    buf: ChannelBuffer[tuple[int, int]] = ChannelBuffer("c", delivered_seq=cursor)
    got: list[tuple[int, int]] = []
    seen: set[int] = set()
    for i, seq in enumerate(seqs):
        got.extend(buf.offer(seq, (seq, i)))
        seen.add(seq)
        # Model: delivered is the end of the unbroken run from the cursor.
        delivered = cursor
        while delivered + 1 in seen:
            delivered += 1
        buffered = {s for s in seen if s > delivered}
        assert buf.delivered_seq == delivered
        assert buf.pending == len(buffered)
        if buffered:
            assert buf.gap() == Gap("c", after_seq=delivered, until_seq=min(buffered))
        else:
            assert buf.gap() is None
    assert [seq for seq, _ in got] == list(range(cursor + 1, n + 1))
    # Each delivered item is the first copy offered for its seq.
    first_index: dict[int, int] = {}
    for i, seq in enumerate(seqs):
        first_index.setdefault(seq, i)
    assert all(i == first_index[seq] for seq, i in got)
    assert buf.pending == 0


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_property_ordering_buffer_interleaved_channels(data: st.DataObject) -> None:
    channels = ["a", "b", "c"]
    cursors = {c: data.draw(st.integers(min_value=0, max_value=5), label=c) for c in channels}
    streams: list[tuple[str, int]] = []
    expected: dict[str, list[int]] = {}
    for c in channels:
        n = data.draw(st.integers(min_value=cursors[c], max_value=25), label=f"n_{c}")
        seqs = data.draw(st.permutations(range(1, n + 1)), label=f"perm_{c}")
        extra = data.draw(st.lists(st.sampled_from(seqs), max_size=5)) if seqs else []
        streams.extend((c, s) for s in [*seqs, *extra])
        expected[c] = list(range(cursors[c] + 1, n + 1))
    order = data.draw(st.permutations(streams), label="order")

    ob: OrderingBuffer[tuple[str, int]] = OrderingBuffer(cursors)
    got: dict[str, list[int]] = {c: [] for c in channels}
    for c, seq in order:
        for item_c, item_seq in ob.offer(c, seq, (c, seq)):
            assert item_c == c
            got[c].append(item_seq)
    assert got == expected
    assert ob.gaps() == []
    assert ob.cursors() == {c: (exp[-1] if exp else cursors[c]) for c, exp in expected.items()}
