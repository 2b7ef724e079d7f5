"""The command pipeline (edge/commands.py) and the WebSocket side of edge/errors.py.

The services are a fake of what commands call; the metric is the real counter.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from realtimechat.domain.errors import (
    ChatError,
    NotAMember,
    RateLimited,
    TokenExpired,
    Unavailable,
    ValidationFailed,
)
from realtimechat.domain.models import Message
from realtimechat.edge import commands, errors
from realtimechat.edge.commands import SendMessage, Services
from realtimechat_client import protocol


class FakeMessages:
    """Answers sends with a message, or raises what it is told to."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    async def send(
        self, user_id: str, channel_id: str, body: str, client_msg_id: str, attachments: list[Any]
    ) -> tuple[Message, bool]:
        self.calls.append((user_id, channel_id, body, client_msg_id, attachments))
        if self.fail is not None:
            raise self.fail
        msg = Message("m", channel_id, 1, user_id, client_msg_id, body, [], 1, 0, None, None)
        return msg, True


class FakeServices:
    def __init__(self, messages: FakeMessages) -> None:
        self.messages = messages


def services(fail: Exception | None = None) -> Services:
    return cast(Services, FakeServices(FakeMessages(fail)))


def sends(transport: str, outcome: str) -> float:
    labels = {"transport": transport, "outcome": outcome}
    return REGISTRY.get_sample_value("rtc_message_sends_total", labels) or 0.0


SEND = SendMessage("c1", "hello", "k1", ("f1",))


async def test_a_command_runs_its_handler_and_counts_ok() -> None:
    svc = services()
    before = sends("ws", "ok")
    sent = await commands.run(SEND, svc, actor="u1", transport="ws")
    assert (sent.created, sent.message.body) == (True, "hello")
    assert cast(FakeMessages, svc.messages).calls == [("u1", "c1", "hello", "k1", ["f1"])]
    assert sends("ws", "ok") == before + 1


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (NotAMember(), "client_error"),
        (ValidationFailed("x"), "client_error"),
        (RateLimited(1), "client_error"),
        (Unavailable(), "server_error"),
        (ChatError(), "server_error"),  # no status of its own: a 500
        (RuntimeError("bug"), "server_error"),
    ],
)
async def test_the_outcome_is_the_http_status_class_on_both_transports(
    error: Exception, outcome: str
) -> None:
    for transport in ("rest", "ws"):
        before = sends(transport, outcome)
        with pytest.raises(type(error)):
            await commands.run(SEND, services(error), actor="u1", transport=transport)
        assert sends(transport, outcome) == before + 1


def test_a_command_refused_before_it_ran_is_a_client_error() -> None:
    before = sends("ws", "client_error")
    commands.refused(SendMessage, "ws")
    assert sends("ws", "client_error") == before + 1


# ---- errors as WebSocket frames and close codes -------------------------------------


def test_a_domain_error_frame_carries_its_details_and_the_frames_ids() -> None:
    raw = {"type": "send", "channel_id": "c1", "client_msg_id": "k1", "body": "   "}
    frame = errors.error_frame(ValidationFailed("body must not be empty", field="body"), raw)
    assert frame == {
        "type": "error",
        "code": "validation_error",
        "message": "body must not be empty",
        "field": "body",
        "channel_id": "c1",
        "client_msg_id": "k1",
        "ref": "send",
    }
    assert errors.error_frame(RateLimited(2))["retry_after_ms"] == 2000


def test_close_codes_follow_the_error_class() -> None:
    assert errors.close_code_of(TokenExpired()) == protocol.CLOSE_UNAUTHORIZED
    assert errors.close_code_of(Unavailable()) == protocol.CLOSE_TRY_AGAIN


def invalid(raw: dict[str, object]) -> dict[str, object]:
    with pytest.raises(ValidationError) as exc:
        protocol.CLIENT_FRAME.validate_python(raw)
    return errors.invalid_frame_error(exc.value, raw)


def test_a_frame_its_model_refuses_names_the_field_not_the_value() -> None:
    err = invalid({"type": "send", "channel_id": "c" * 37, "client_msg_id": "k"})
    assert (err["code"], err["field"], err["ref"]) == ("validation_error", "channel_id", "send")
    assert "ccc" not in str(err["message"])
    err = invalid({"type": "send", "channel_id": "c", "client_msg_id": "k", "attachments": [1]})
    assert (err["field"], err["message"]) == (
        "attachments",
        "attachments.0: Input should be a valid string",
    )
    err = invalid({"type": "resume", "cursors": []})
    assert (err["code"], err["field"], err["ref"]) == ("validation_error", "cursors", "resume")


def test_an_unknown_type_is_unknown_frame_type() -> None:
    err = invalid({"type": "ack", "channel_id": "c1", "seq": 3})
    assert (err["code"], err["ref"], err["channel_id"]) == ("unknown_frame_type", "ack", "c1")
    assert "field" not in err
