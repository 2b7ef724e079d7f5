"""The stored figures metrics report: job states, outbox backlog, storage used."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.domain.records import StoredStats
from realtimechat.storage.notifications import SqlNotifications
from realtimechat.storage.outbox import SqlOutbox
from realtimechat.storage.tables import team_storage


class SqlStats:
    """Reads across tables, for gauges."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def stored(self, now: int) -> StoredStats:
        rows, lag_ms = SqlOutbox(self._conn).lag(now)
        used = self._conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(team_storage.c.used_bytes), 0))
        ).scalar_one()
        return StoredStats(SqlNotifications(self._conn).job_counts(), rows, lag_ms, int(used))
