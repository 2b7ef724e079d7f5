"""The background work of `realtimechat worker`, and the same work run inside a node.

Several workers may run: the relay's and the dispatcher's claims keep them from
taking the same rows at once, and housekeeping and file reconciliation are
idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from realtimechat.bus.base import Bus
from realtimechat.ids import now_ms
from realtimechat.providers.factory import Providers
from realtimechat.services.dispatcher import NotificationDispatcher
from realtimechat.services.files import FileService
from realtimechat.services.outbox import OutboxRelay, Publish
from realtimechat.services.uow import UnitOfWork
from realtimechat.settings import Settings

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 600.0
METRICS_REFRESH_S = 5.0
# Finished jobs are kept a while for on-call to look at; dead ones longer, to requeue.
FINISHED_JOBS_KEPT_MS = 7 * 24 * 3600 * 1000
DEAD_JOBS_KEPT_MS = 30 * 24 * 3600 * 1000
# Failed sign-ins are forgotten a day after the last one (the lock's count resets sooner).
STALE_FAILURES_MS = 24 * 3600 * 1000


class Worker:
    """Runs the outbox relay (when there is a bus to relay to), notification dispatch
    and housekeeping."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        publish: Publish | None,
        settings: Settings,
        files: FileService,
        providers: Providers,
    ) -> None:
        self._uow = uow
        self.files = files
        self._reconcile_s = settings.files.reconcile_s
        self.relay = None if publish is None else OutboxRelay(uow=uow, publish=publish)
        self.providers = providers
        self.dispatcher = NotificationDispatcher(
            uow=uow, providers=self.providers, settings=settings.notify
        )
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks += [
            asyncio.create_task(
                every(HOUSEKEEPING_S, "housekeeping", self.housekeeping), name="housekeeping"
            ),
            asyncio.create_task(self.dispatcher.run(), name="notifications"),
            asyncio.create_task(
                every(self._reconcile_s, "file reconciliation", self.files.reconcile),
                name="file-reconciliation",
            ),
        ]
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(), name="outbox-relay"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.providers.close()

    async def housekeeping(self, now: int | None = None) -> tuple[int, int]:
        """Delete expired refresh tokens and old finished notification jobs; (tokens, jobs)."""
        now = now_ms() if now is None else now
        expired = await self._uow.write(lambda tx: tx.tokens.delete_expired(now))
        await self._uow.write(lambda tx: tx.sessions.delete_expired_revocations(now))
        await self._uow.write(lambda tx: tx.sessions.delete_stale_failures(now - STALE_FAILURES_MS))
        finished = await self._uow.write(
            lambda tx: tx.notifications.delete_finished(
                now - FINISHED_JOBS_KEPT_MS, now - DEAD_JOBS_KEPT_MS
            )
        )
        if expired or finished:
            log.info(
                "housekeeping: deleted %d expired refresh tokens, %d finished notification jobs",
                expired,
                finished,
            )
        return expired, finished


async def every(interval_s: float, what: str, job: Callable[[], Awaitable[object]]) -> None:
    """Run `job` now and then every `interval_s` until cancelled; a failure waits a turn."""
    while True:
        try:
            await job()
        except Exception as exc:
            log.warning("%s failed, trying again later: %r", what, exc)
        await asyncio.sleep(interval_s)


def relay_publish(bus: Bus) -> Publish | None:
    """The bus's confirmed publish, if it is one that can lose events (else no relay)."""
    return bus.publish_confirmed if bus.needs_outbox else None
