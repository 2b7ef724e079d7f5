"""Outbox rows: events a bus that can lose a publish has not confirmed yet."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.models import Event
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import events, outbox

_INSERT_OUTBOX = Prepared(outbox.insert())


class SqlOutbox:
    """The outbox table."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, written: Sequence[Event]) -> None:
        """An outbox row for each event (the unit of work's, before its commit)."""
        for ev in written:
            _INSERT_OUTBOX.execute(
                self._conn,
                {
                    "channel_id": ev.channel_id,
                    "seq": ev.seq,
                    "created_at": ev.created_at,
                    "claimed_until": 0,
                },
            )

    def claim(self, *, older_than: int, now: int, until: int, limit: int) -> list[Event]:
        """Claim up to `limit` unpublished events written before `older_than`, oldest first.

        Rows claimed by another relay (until a time still to come) or locked by one are
        skipped, so several relays share the work; a claim lapses at `until`.
        """
        key = sa.tuple_(outbox.c.channel_id, outbox.c.seq)
        due = (
            sa.select(outbox.c.channel_id, outbox.c.seq)
            .where(outbox.c.created_at < older_than, outbox.c.claimed_until < now)
            .order_by(outbox.c.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claimed = self._conn.execute(
            outbox.update()
            .where(key.in_(due))
            .values(claimed_until=until)
            .returning(outbox.c.channel_id, outbox.c.seq)
        ).all()
        if not claimed:
            return []
        rows = self._conn.execute(
            sa.select(
                events.c.channel_id,
                events.c.seq,
                events.c.type,
                events.c.payload,
                events.c.created_at,
            )
            .where(sa.tuple_(events.c.channel_id, events.c.seq).in_([tuple(r) for r in claimed]))
            .order_by(events.c.channel_id, events.c.seq)  # each channel in seq order
        )
        return [
            Event.stored(r.channel_id, r.seq, r.type, r.payload.encode(), r.created_at)
            for r in rows
        ]

    def delete(self, keys: list[tuple[str, int]]) -> None:
        if keys:
            self._conn.execute(
                outbox.delete().where(sa.tuple_(outbox.c.channel_id, outbox.c.seq).in_(keys))
            )

    def lag(self, now: int) -> tuple[int, int]:
        row = self._conn.execute(sa.select(sa.func.count(), sa.func.min(outbox.c.created_at))).one()
        return int(row[0]), (now - int(row[1])) if row[1] is not None else 0
