"""Appending events: the one place a channel's seq is allocated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from realtimechat.bus.base import Bus
from realtimechat.domain.models import Event
from realtimechat.ids import now_ms
from realtimechat.storage import repositories as repo


def append_event(
    conn: Connection,
    channel_id: str,
    type_: str,
    data: dict[str, Any],
    *,
    message_id: str | None = None,
    joined: tuple[str, ...] = (),
    left: tuple[str, ...] = (),
) -> Event:
    """Allocate the next seq and persist the event, in the caller's transaction."""
    seq = repo.next_seq(conn, channel_id)
    ev = Event(channel_id, seq, type_, orjson.dumps(data), now_ms(), joined, left)
    repo.insert_event(conn, ev, message_id)
    return ev


def publish_result(bus: Bus) -> Callable[[object], None]:
    """An on-commit callback that publishes the Event a unit of work returned.

    The event is the result itself or the last item of a result tuple; None
    (nothing changed, e.g. an idempotent retry) publishes nothing.
    """

    def publish(result: object) -> None:
        ev = result[-1] if isinstance(result, tuple) and result else result
        if isinstance(ev, Event):
            bus.publish([ev])

    return publish
