"""What the database knows that metrics report: job states, outbox backlog, storage used."""

from __future__ import annotations

from collections.abc import Callable

from realtimechat.domain.records import StoredStats
from realtimechat.ids import now_ms
from realtimechat.observability import metrics
from realtimechat.services.uow import UnitOfWork


async def refresh_metrics(
    uow: UnitOfWork, pool: Callable[[], dict[str, int]], *, clock: Callable[[], int] = now_ms
) -> StoredStats:
    """Read the stored figures in one transaction and publish them as gauges, with the
    database runner's `pool` status."""
    now = clock()
    stats = await uow.read(lambda tx: tx.stats.stored(now))
    metrics.set_job_counts(stats.jobs)
    metrics.OUTBOX_ROWS.set(stats.outbox_rows)
    metrics.OUTBOX_LAG.set(stats.outbox_lag_ms / 1000)
    metrics.FILE_STORAGE_USED.set(stats.storage_used_bytes)
    status = pool()
    metrics.DB_POOL_IN_USE.set(status["readers_busy"])
    metrics.DB_POOL_SIZE.set(status["readers"])
    metrics.DB_WRITE_QUEUE.set(status["write_queue"])
    metrics.DB_READ_QUEUE.set(status["reads_waiting"])
    return stats
