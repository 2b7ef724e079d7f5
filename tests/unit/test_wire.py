"""Pure wire-format logic: event frames, cursors, If-Match, timestamps."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtimechat.domain.errors import PreconditionFailed, PreconditionRequired
from realtimechat.domain.models import Event
from realtimechat.edge import frames
from realtimechat.edge.gateway import parse_cursor
from realtimechat.edge.routes.messages import parse_if_match
from realtimechat.ids import iso

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(data=st.dictionaries(st.text(), json_values, max_size=5), seq=st.integers(1, 2**40))
def test_spliced_event_frame_is_the_json_of_its_parts(data: dict[str, object], seq: int) -> None:
    ev = Event("c1", seq, "message.created", orjson.dumps(data), 1_700_000_000_123)
    frame = orjson.loads(frames.event_frame(ev))
    assert frame == {
        "type": "event",
        "channel_id": "c1",
        "seq": seq,
        "event": "message.created",
        "created_at": "2023-11-14T22:13:20.123Z",
        "data": data,
    }
    page = orjson.loads(frames.events_page([ev, ev], True))
    assert page["has_more"] is True
    assert page["events"][0] == {k: v for k, v in frame.items() if k != "type"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5, (5, None)),
        (0, (0, None)),
        ({"seq": 7, "epoch": "ab"}, (7, "ab")),
        ({"seq": 7}, (7, None)),
        (-1, None),
        (True, None),
        ("5", None),
        ({"seq": "7"}, None),
        ({"seq": 7, "epoch": 3}, None),
        ({"epoch": "ab"}, None),
        (None, None),
    ],
)
def test_parse_cursor(raw: object, expected: tuple[int, str | None] | None) -> None:
    assert parse_cursor(raw) == expected


def test_parse_if_match() -> None:
    assert parse_if_match('"3"') == 3
    assert parse_if_match('W/"12"') == 12
    assert parse_if_match("4") == 4
    with pytest.raises(PreconditionRequired):
        parse_if_match(None)
    with pytest.raises(PreconditionFailed):
        parse_if_match('"abc"')


def test_iso_is_utc_with_milliseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_700_000_000_005) == "2023-11-14T22:13:20.005Z"
    assert iso(None) is None
