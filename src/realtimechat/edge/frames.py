"""Frames as the server writes them: serialised once, the stored payload spliced in."""

from __future__ import annotations

from typing import Any

import orjson

from realtimechat.domain.models import Event
from realtimechat.ids import iso


def dumps(frame: dict[str, Any]) -> str:
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
