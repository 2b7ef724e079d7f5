"""Resume planning (edge/ws/resume.py): where each channel starts again, without a socket."""

from __future__ import annotations

from realtimechat.domain.models import Channel
from realtimechat.edge.ws.resume import Plan, Step, plan


def channel(channel_id: str, last_seq: int, epoch: str = "e1") -> Channel:
    return Channel(channel_id, "t", "public", channel_id, last_seq, epoch, "u", 0)


CHANNELS = {"a": channel("a", 50), "b": channel("b", 5000), "c": channel("c", 10, "e2")}


def planned(cursors: dict[str, object], published: dict[str, int] | None = None) -> Plan:
    return plan(cursors, CHANNELS, published_seq=published or {}, replay_limit=1000, ref="resume")


def test_a_cursor_within_the_replay_limit_rewinds_to_it() -> None:
    got = planned({"a": 40, "b": {"seq": 4500, "epoch": "e1"}})
    assert got.steps == {"a": Step("rewind", 40), "b": Step("rewind", 4500)}
    assert got.errors == []


def test_a_cursor_too_far_back_ahead_or_of_another_epoch_resyncs_at_the_current_seq() -> None:
    got = planned({"b": 3000, "a": 51, "c": {"seq": 3, "epoch": "e1"}})
    assert got.steps == {
        "b": Step("resync", 5000),
        "a": Step("resync", 50),
        "c": Step("resync", 10),
    }


def test_what_the_bus_brought_counts_as_the_current_seq() -> None:
    # The database said 50 when the channels were read; the bus has brought 60 since.
    assert planned({"a": 55}, {"a": 60}).steps == {"a": Step("rewind", 55)}
    assert planned({"a": 60}, {"a": 60}).steps == {"a": Step("rewind", 60)}


def test_unknown_channels_and_malformed_cursors_are_error_frames_in_cursor_order() -> None:
    got = planned({"nope": 1, "a": "5", "x" * 129: 1, "c": 10})
    assert got.steps == {"c": Step("rewind", 10)}
    assert [(e["code"], e.get("channel_id"), e["ref"]) for e in got.errors] == [
        ("not_found", "nope", "resume"),
        ("validation_error", "a", "resume"),
        ("validation_error", None, "resume"),  # the id is too long to echo
    ]
