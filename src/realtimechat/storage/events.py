"""The channel event log, and the events a transaction appended to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import Event
from realtimechat.ids import now_ms
from realtimechat.storage.channels import NEXT_SEQ
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import channel_members, events

INSERT_EVENT = Prepared(events.insert())
_EVENTS_AFTER = (
    sa.select(events.c.seq, events.c.type, events.c.payload, events.c.created_at)
    .where(events.c.channel_id == sa.bindparam("channel_id"), events.c.seq > sa.bindparam("after"))
    .order_by(events.c.seq)
    .limit(sa.bindparam("limit"))
)


class Appended:
    """The events one transaction appended, in order, for its unit of work to publish.

    `outbox`: the bus can lose a publish, so every event needs an outbox row; the unit
    of work writes those that a combined statement did not write already.
    """

    __slots__ = ("_without_row", "events", "outbox", "read_only")

    def __init__(self, *, outbox: bool, read_only: bool = False) -> None:
        self.events: list[Event] = []
        self.outbox = outbox
        self.read_only = read_only
        self._without_row: list[Event] = []

    def check_writable(self) -> None:
        """Refuse, before any statement, an event a read transaction would lose."""
        if self.read_only:
            raise RuntimeError("an event appended in a read transaction would be lost")

    def add(self, ev: Event, *, has_outbox_row: bool = False) -> None:
        self.check_writable()
        self.events.append(ev)
        if self.outbox and not has_outbox_row:
            self._without_row.append(ev)

    def missing_outbox_rows(self) -> list[Event]:
        """The appended events that still need their outbox row."""
        return self._without_row


def insert_event(conn: Connection, ev: Event, message_id: str | None) -> None:
    INSERT_EVENT.execute(
        conn,
        {
            "channel_id": ev.channel_id,
            "seq": ev.seq,
            "type": ev.type,
            "message_id": message_id,
            "payload": ev.data.decode(),
            "created_at": ev.created_at,
        },
    )


class SqlEvents:
    """The events table."""

    def __init__(self, conn: Connection, appended: Appended) -> None:
        self._conn = conn
        self._appended = appended

    def append(
        self,
        channel_id: str,
        type_: str,
        data: Mapping[str, Any],
        *,
        message_id: str | None = None,
        joined: tuple[str, ...] = (),
        left: tuple[str, ...] = (),
    ) -> Event:
        self._appended.check_writable()
        seq = int(NEXT_SEQ.scalar(self._conn, {"cid": channel_id}))
        ev = Event(channel_id, seq, type_, orjson.dumps(data), now_ms(), joined, left)
        insert_event(self._conn, ev, message_id)
        self._appended.add(ev)
        return ev

    def after(self, channel_id: str, after_seq: int, limit: int) -> list[Event]:
        rows = self._conn.execute(
            _EVENTS_AFTER, {"channel_id": channel_id, "after": after_seq, "limit": limit}
        )
        return [Event(channel_id, r.seq, r.type, r.payload.encode(), r.created_at) for r in rows]

    def joins_since(self, user_ids: list[str], since: int) -> list[Event]:
        members = self._conn.execute(
            sa.select(channel_members.c.channel_id, channel_members.c.joined_at).where(
                channel_members.c.user_id.in_(user_ids), channel_members.c.joined_at >= since
            )
        ).all()
        wanted = set(user_ids)
        found: dict[tuple[str, int], Event] = {}
        for channel_id, joined_at in members:
            rows = self._conn.execute(
                sa.select(events.c.seq, events.c.type, events.c.payload, events.c.created_at).where(
                    events.c.channel_id == channel_id,
                    events.c.type.in_(("member.joined", "channel.created")),
                    events.c.created_at >= joined_at - 1000,  # written in the same transaction
                )
            )
            for r in rows:
                ev = Event.stored(channel_id, r.seq, r.type, r.payload.encode(), r.created_at)
                if wanted.intersection(ev.joined):
                    found[(channel_id, ev.seq)] = ev
        return [found[k] for k in sorted(found)]
