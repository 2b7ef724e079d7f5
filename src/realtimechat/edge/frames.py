"""Frames as the server writes them: plain dicts serialised once, events spliced in.

Each builder here produces one server frame of realtimechat_client.protocol (a unit
test validates every one against its model); building dicts rather than models keeps
pydantic off the send and fan-out paths. Event frames splice the stored payload bytes
in, so a payload is never parsed or serialised again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.models import Channel, Event, Message
from realtimechat.ids import iso
from realtimechat_client import protocol

HEARTBEAT: dict[str, object] = {"type": "heartbeat"}


def dumps(frame: Mapping[str, Any]) -> str:
    """One frame as JSON text."""
    return orjson.dumps(frame).decode()


def event_fields_json(ev: Event) -> bytes:
    """The event as the REST events page and the WebSocket frame both carry it.

    Built by splicing the stored payload bytes in, so the payload is never
    parsed or serialised again.
    """
    head = orjson.dumps(
        {
            "channel_id": ev.channel_id,
            "seq": ev.seq,
            "event": ev.type,
            "created_at": iso(ev.created_at),
        }
    )
    return head[:-1] + b',"data":' + ev.data + b"}"


def event_frame(ev: Event) -> str:
    """The `event` frame for an event, serialised once per fan-out."""
    return '{"type":"event",' + event_fields_json(ev)[1:].decode()


def events_page(events: list[Event], has_more: bool) -> bytes:
    """The body of GET /channels/{id}/events."""
    return (
        b'{"events":['
        + b",".join(event_fields_json(e) for e in events)
        + b'],"has_more":'
        + (b"true" if has_more else b"false")
        + b"}"
    )


def ready(
    *,
    session_id: str,
    user_id: str,
    channels: list[Channel],
    heartbeat_ms: int,
    replay_limit: int,
    expires_at: int | None,
) -> dict[str, object]:
    """The `ready` frame: the session's channels and where each stands."""
    return {
        "type": "ready",
        "session_id": session_id,
        "user_id": user_id,
        "channels": [
            {
                "id": c.id,
                "last_seq": c.last_seq,
                "epoch": c.epoch,
                "kind": c.kind,
                "name": c.name,
                "team_id": c.team_id,
            }
            for c in channels
        ],
        "heartbeat_ms": heartbeat_ms,
        "replay_limit": replay_limit,
        "expires_at": expires_at,
    }


def send_ok(client_msg_id: str, created: bool, message: Message) -> dict[str, object]:
    """The answer to a `send` frame."""
    return {
        "type": "send_ok",
        "client_msg_id": client_msg_id,
        "created": created,
        "message": message.to_json(),
    }


def auth_ok(expires_at: int | None) -> dict[str, object]:
    """The answer to a re-auth that took."""
    return {"type": "auth_ok", "expires_at": expires_at}


def pong(id_: object) -> dict[str, object]:
    """The answer to a `ping`, with its id."""
    return {"type": "pong", "id": id_}


def going_away(reconnect_after_ms: int) -> dict[str, object]:
    """The node is stopping."""
    return {"type": "going_away", "reconnect_after_ms": reconnect_after_ms}


def resync(channel_id: str) -> dict[str, object]:
    """The channel cannot be replayed from the client's cursor."""
    return {"type": "resync", "channel_id": channel_id}


def ephemeral(sig: Ephemeral) -> dict[str, object]:
    """A signal with no seq (typing) as the other members' sessions get it."""
    return {"type": sig.type, "channel_id": sig.channel_id, "user_id": sig.user_id}


def echoable(value: object) -> bool:
    """A value small enough to echo: a JSON scalar, a string of at most MAX_ECHO_CHARS."""
    if isinstance(value, str):
        return len(value) <= protocol.MAX_ECHO_CHARS
    return value is None or isinstance(value, int | float)  # bool is an int


def oversize(frame: Mapping[str, object]) -> str | None:
    """The first echoed field of a client frame (its type included) that cannot be echoed."""
    for key in ("type", *protocol.ECHOED):
        if key in frame and not echoable(frame[key]):
            return key
    return None


def error(
    code: str, message: str, frame: Mapping[str, object] | None = None, **extra: object
) -> dict[str, object]:
    """An `error` frame; with `frame` (the client's), its echoable ids and its type as `ref`."""
    if len(message) > protocol.MAX_ERROR_MESSAGE_CHARS:
        message = message[: protocol.MAX_ERROR_MESSAGE_CHARS] + "…"
    out: dict[str, object] = {"type": "error", "code": code, "message": message, **extra}
    if frame is not None:
        for key in protocol.ECHOED:
            if key in frame and echoable(frame[key]):
                out[key] = frame[key]
        kind = frame.get("type")
        out["ref"] = kind if echoable(kind) else None
    return out
