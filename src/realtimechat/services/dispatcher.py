"""Notification dispatch: claim due jobs, send them through the providers, record how it went.

Runs in the worker (and inside a node when it runs the worker's jobs). Sends never
wait for it: jobs are rows written with the message, and a slow or dead provider
only makes them wait here.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from realtimechat.domain.notifications import Job, backoff_s
from realtimechat.ids import now_ms
from realtimechat.observability import metrics
from realtimechat.observability.outage import OutageLog
from realtimechat.providers.base import (
    EmailMessage,
    ProviderError,
    PushMessage,
    Refused,
    TokenUnregistered,
)
from realtimechat.providers.factory import Providers
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import NotifySettings

log = logging.getLogger(__name__)

PREVIEW_CHARS = 200


def _preview(body: str) -> str:
    return body if len(body) <= PREVIEW_CHARS else body[: PREVIEW_CHARS - 1] + "…"


def _title(ctx: dict[str, Any]) -> str:
    return str(ctx["sender"]) if ctx["kind"] == "dm" else f"{ctx['sender']} in #{ctx['channel']}"


def _skip_reason(job: Job, ctx: dict[str, Any] | None) -> str | None:
    """Why a job should no longer be sent, looked at when it runs (not when written)."""
    if ctx is None:
        return "message deleted, or the user left the channel"
    if ctx["muted"]:
        return "channel muted"
    if not ctx[job.kind]:
        return f"{job.kind} turned off"
    # A delayed push and every e-mail are for what stays unread.
    if (job.kind == "email" or job.reason == "channel") and ctx["read_seq"] >= job.seq:
        return "read"
    return None


class NotificationDispatcher:
    """One claimer of due notification jobs; several may run side by side."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        providers: Providers,
        settings: NotifySettings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._uow = uow
        self._providers = providers
        self._settings = settings
        self._clock = clock
        self.sent = 0

    def _open_kinds(self, flags: dict[str, bool]) -> list[str]:
        """Kinds whose switch is on and whose provider's breaker lets calls through."""
        kinds = []
        for kind in ("push", "email"):
            if not flags.get(kind, True):
                continue  # switched off: its jobs wait
            if self._providers.guards[kind].state == "open":
                continue  # the breaker will refuse: claiming would only spend attempts
            kinds.append(kind)
        return kinds

    async def run_once(self) -> int:
        """Claim one batch of due jobs and work it off; how many were claimed."""
        flags = await self._uow.read(lambda tx: tx.flags.all())
        kinds = self._open_kinds(flags)
        if not kinds:
            return 0
        now = self._clock()
        lease_ms = int(self._settings.lease_s * 1000)
        batch = self._settings.batch
        jobs = await self._uow.write(
            lambda tx: tx.notifications.claim_jobs(kinds, now, lease_ms, batch)
        )
        if not jobs:
            return 0
        emails: defaultdict[str, list[Job]] = defaultdict(list)
        pushes = []
        for job in jobs:
            if job.kind == "email":
                emails[job.user_id].append(job)
            else:
                pushes.append(job)
        await asyncio.gather(
            *(self._push(job) for job in pushes),
            *(self._email(user_id, group) for user_id, group in emails.items()),
        )
        return len(jobs)

    async def run(self) -> None:
        """Poll for due jobs until cancelled; an outage of the database is logged once."""
        outage = OutageLog(log, "notification dispatch")
        while True:
            try:
                claimed = await self.run_once()
            except Exception as exc:
                claimed = 0
                outage.failed(exc)
            else:
                outage.ok()
            if claimed < self._settings.batch:
                await asyncio.sleep(self._settings.poll_s)

    async def _push(self, job: Job) -> None:
        def read(tx: Tx) -> tuple[dict[str, Any] | None, list[Any]]:
            ctx = tx.notifications.job_context(job.channel_id, job.seq, job.user_id)
            return ctx, tx.notifications.devices(job.user_id)

        ctx, devices = await self._uow.read(read)
        reason = _skip_reason(job, ctx)
        if reason is None and not devices:
            reason = "no device registered"
        if reason is not None or ctx is None:
            await self._finish([job], "skipped", reason)
            return
        results = await asyncio.gather(
            *(
                self._providers.push.send(
                    PushMessage(
                        token=d.token,
                        platform=d.platform,
                        title=_title(ctx),
                        body=_preview(str(ctx["body"])),
                        data={"job_id": job.id, "channel_id": job.channel_id, "seq": str(job.seq)},
                    )
                )
                for d in devices
            ),
            return_exceptions=True,
        )
        errors: list[ProviderError] = []
        delivered = 0
        for device, result in zip(devices, results, strict=True):
            if isinstance(result, TokenUnregistered):
                await self._forget_token(device.token)
                log.info("push token unregistered: device %s forgotten", device.id)
            elif isinstance(result, ProviderError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                delivered += 1
        if delivered > 0:
            # Sent to some device: a retry would repeat it on those.
            await self._finish([job], "sent", None)
        elif errors:
            await self._failed([job], errors[0])
        else:
            await self._finish([job], "skipped", "every device token was unregistered")

    async def _forget_token(self, token: str) -> None:
        await self._uow.write(lambda tx: tx.notifications.forget_token(token))

    async def _email(self, user_id: str, jobs: list[Job]) -> None:
        """One e-mail for all of a user's due unread items."""

        def read(tx: Tx) -> tuple[str | None, list[dict[str, Any] | None]]:
            contexts = [tx.notifications.job_context(j.channel_id, j.seq, j.user_id) for j in jobs]
            return tx.users.email(user_id), contexts

        address, contexts = await self._uow.read(read)
        due: list[tuple[Job, dict[str, Any]]] = []
        for job, ctx in zip(jobs, contexts, strict=True):
            reason = _skip_reason(job, ctx)
            if reason is not None or ctx is None:
                await self._finish([job], "skipped", reason)
            else:
                due.append((job, ctx))
        if not due:
            return
        if address is None:
            await self._finish([j for j, _ in due], "skipped", "user has no e-mail address")
            return
        lines = [f"{_title(ctx)}: {_preview(str(ctx['body']))}" for _, ctx in due]
        n = len(due)
        msg = EmailMessage(
            to=address,
            subject=f"{n} unread message{'s' if n > 1 else ''} on RealTimeChat",
            text="\n\n".join(lines),
            job_id=min(j.id for j, _ in due),
        )
        group = [j for j, _ in due]
        try:
            await self._providers.email.send(msg)
        except ProviderError as exc:
            await self._failed(group, exc)
            return
        await self._finish(group, "sent", None)

    async def _finish(self, jobs: list[Job], state: str, why: str | None) -> None:
        ids = [j.id for j in jobs]
        now = self._clock()
        await self._uow.write(lambda tx: tx.notifications.finish_jobs(ids, state, now, why))
        if state == "sent":
            self.sent += len(jobs)
        for job in jobs:
            metrics.NOTIFICATION_RESULTS.labels(job.kind, state).inc()

    async def _failed(self, jobs: list[Job], exc: ProviderError) -> None:
        """Retry later with backoff (no sooner than Retry-After), or give up: dead."""
        error = f"{exc.__class__.__name__}: {exc}"
        now = self._clock()
        ids = [j.id for j in jobs]
        if isinstance(exc, Refused):
            # Never reached the provider: wait for the breaker, and keep the attempt.
            due = now + int((exc.retry_after or self._settings.backoff_base_s) * 1000)
            await self._uow.write(
                lambda tx: tx.notifications.retry_jobs(ids, due, now, error, refund=True)
            )
            return
        attempts = max(j.attempts for j in jobs)
        if not exc.retryable or attempts >= self._settings.max_attempts:
            await self._finish(jobs, "dead", error)
            log.warning("notification jobs dead after %d attempts: %s", attempts, error)
            return
        delay = backoff_s(
            attempts, self._settings.backoff_base_s, self._settings.backoff_max_s, exc.retry_after
        )
        due_at = now + int(delay * 1000)
        await self._uow.write(lambda tx: tx.notifications.retry_jobs(ids, due_at, now, error))
        for job in jobs:
            metrics.NOTIFICATION_RESULTS.labels(job.kind, "retried").inc()
