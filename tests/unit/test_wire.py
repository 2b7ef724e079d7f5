"""Pure wire-format logic: event frames, the protocol models, cursors, If-Match, timestamps."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.errors import PreconditionFailed, PreconditionRequired, ValidationFailed
from realtimechat.domain.models import Channel, Event, Message
from realtimechat.domain.text import line_problem, text_problem
from realtimechat.edge import errors, frames
from realtimechat.edge.routes.messages import parse_if_match
from realtimechat.edge.ws import dispatch
from realtimechat.edge.ws.resume import parse_cursor
from realtimechat.ids import iso
from realtimechat_client import protocol

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


# ---- the server's frames are the protocol's -----------------------------------------


def assert_is_protocol_frame(frame: dict[str, Any]) -> None:
    """`frame` validates as its protocol model and carries no field the model lacks."""
    model = protocol.SERVER_FRAME.validate_python(frame)
    assert model.type == frame["type"]
    if type(model).model_config.get("extra") != "allow":
        assert set(frame) <= set(type(model).model_fields), set(frame) - set(model.model_fields)


CHANNEL = Channel("c1", "t1", "public", "general", 7, "ep", "u1", 1_700_000_000_000)
MESSAGE = Message(
    "m1", "c1", 8, "u1", "k1", "hi", [{"file_id": "f1", "name": "a.txt", "size": 3,
    "content_type": "text/plain"}], 1, 1_700_000_000_000, None, None,
)  # fmt: skip


@given(data=st.dictionaries(st.text(), json_values, max_size=5), seq=st.integers(1, 2**40))
def test_spliced_event_frames_are_protocol_event_frames(data: dict[str, object], seq: int) -> None:
    ev = Event("c1", seq, "message.created", orjson.dumps(data), 1_700_000_000_123)
    text = frames.event_frame(ev)
    assert_is_protocol_frame(orjson.loads(text))
    parsed = protocol.parse_server_frame(text)
    assert isinstance(parsed, protocol.EventFrame)
    assert (parsed.seq, parsed.data) == (seq, data)


@pytest.mark.parametrize(
    "frame",
    [
        frames.ready(session_id="s", user_id="u1", channels=[CHANNEL], heartbeat_ms=20_000,
                     replay_limit=1000, expires_at=1_700_000_900),
        frames.ready(session_id="s", user_id="u1", channels=[], heartbeat_ms=1, replay_limit=1,
                     expires_at=None),
        frames.send_ok("k1", True, MESSAGE),
        frames.auth_ok(1_700_000_900),
        frames.pong(42),
        frames.pong(None),
        frames.going_away(1000),
        frames.HEARTBEAT,
        frames.resync("c1"),
        frames.ephemeral(Ephemeral("c1", "u1", "typing")),
        frames.error("not_found", "channel not found", {"type": "send", "channel_id": "c1",
                     "client_msg_id": "k1", "body": "x" * 10_000}),
        frames.error("rate_limited", "slow down", {"type": "ping", "id": 3},
                     retry_after_ms=1000),
        frames.error("token_expired", "x" * 2000),
        errors.error_frame(ValidationFailed("body must not be empty", field="body")),
    ],
    ids=lambda f: str(f["type"]),
)  # fmt: skip
def test_every_server_frame_the_server_builds_is_a_protocol_frame(frame: dict[str, Any]) -> None:
    assert_is_protocol_frame(orjson.loads(frames.dumps(frame)))


def test_an_error_frame_echoes_only_short_ids_and_cuts_its_message() -> None:
    err = frames.error("x", "m" * 600, {"type": "send", "channel_id": "c" * 129, "id": 5})
    assert err["ref"] == "send"
    assert err["id"] == 5
    assert "channel_id" not in err
    assert err["message"] == "m" * protocol.MAX_ERROR_MESSAGE_CHARS + "…"


# ---- the protocol's text rules are the server's ------------------------------------


@given(st.text())
def test_the_protocols_text_rules_are_the_servers(value: str) -> None:
    for kind, problem in ((protocol.Line, line_problem), (protocol.Text, text_problem)):
        adapter: TypeAdapter[str] = TypeAdapter(kind)
        try:
            adapter.validate_python(value)
            refused = None
        except ValidationError as exc:
            refused = exc.errors()[0]["msg"].removeprefix("Value error, ")
        assert refused == problem(value)


def test_the_protocol_module_imports_nothing_of_the_server() -> None:
    code = (
        "import sys, realtimechat_client.protocol; "
        "print([m for m in sys.modules if m == 'realtimechat' or m.startswith('realtimechat.')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_client_frame_type_has_a_line_in_the_dispatch_table() -> None:
    assert set(dispatch.FRAMES) == protocol.CLIENT_FRAME_TYPES
    union = protocol.CLIENT_FRAME.json_schema()
    assert set(union["discriminator"]["mapping"]) == protocol.CLIENT_FRAME_TYPES
