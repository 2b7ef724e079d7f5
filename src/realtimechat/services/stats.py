"""What the database knows that metrics report: job states, outbox backlog, storage used."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realtimechat.ids import now_ms
from realtimechat.observability import metrics
from realtimechat.storage import notifications as notes
from realtimechat.storage import repositories as repo
from realtimechat.storage.database import Database
from realtimechat.storage.tables import team_storage


@dataclass(frozen=True)
class StoredStats:
    jobs: dict[str, dict[str, int]]
    outbox_rows: int
    outbox_lag_ms: int
    storage_used_bytes: int


def _read(conn: Connection) -> StoredStats:
    rows, lag_ms = repo.outbox_lag(conn, now_ms())
    used = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(team_storage.c.used_bytes), 0)))
    return StoredStats(notes.job_counts(conn), rows, lag_ms, int(used.scalar_one()))


async def refresh_metrics(db: Database) -> StoredStats:
    """Read the stored figures in one transaction and publish them as gauges."""
    stats = await db.read(_read)
    metrics.set_job_counts(stats.jobs)
    metrics.OUTBOX_ROWS.set(stats.outbox_rows)
    metrics.OUTBOX_LAG.set(stats.outbox_lag_ms / 1000)
    metrics.FILE_STORAGE_USED.set(stats.storage_used_bytes)
    pool = db.pool_status()
    metrics.DB_POOL_IN_USE.set(pool["readers_busy"])
    metrics.DB_POOL_SIZE.set(pool["readers"])
    metrics.DB_WRITE_QUEUE.set(pool["write_queue"])
    metrics.DB_READ_QUEUE.set(pool["reads_waiting"])
    return stats
