"""The outbox: events a cross-node bus has not confirmed yet (DESIGN.md, "Fan-out").

Each event is written with an outbox row in its own transaction. The node that
wrote it publishes it at once (the fast path) and, when the bus confirms,
`OutboxAcks` deletes the row. Rows left behind, because the node died between
commit and publish or the bus was down, are published by `OutboxRelay` in the
worker after a short delay. Publishing twice is harmless: connections drop a
seq they have already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from realtimechat.domain.models import Event
from realtimechat.ids import now_ms
from realtimechat.observability.outage import OutageLog
from realtimechat.services.uow import UnitOfWork

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event]], Awaitable[None]]


class OutboxAcks:
    """Deletes the outbox rows of published events, many per transaction."""

    def __init__(self, *, uow: UnitOfWork, interval_s: float = 0.1, max_keys: int = 5000) -> None:
        self._uow = uow
        self._interval_s = interval_s
        self._max_keys = max_keys
        self._keys: list[tuple[str, int]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.acked = 0

    def published(self, events: Sequence[Event]) -> None:
        """The bus has these events; forget their rows soon. Never blocks."""
        if len(self._keys) >= self._max_keys:
            return  # the relay publishes the rest again, which is harmless
        self._keys.extend((ev.channel_id, ev.seq) for ev in events)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-acks")

    async def stop(self) -> None:
        """Flush what is pending, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except Exception as exc:  # the relay will publish them again: no loss
                log.warning("outbox acks failed: %r", exc)
            await asyncio.sleep(self._interval_s)

    async def _flush(self) -> None:
        keys, self._keys = self._keys, []
        if keys:
            await self._uow.write(lambda tx: tx.outbox.delete(keys))
            self.acked += len(keys)


class OutboxRelay:
    """Publishes events whose rows outlived the fast path; safe with several relays."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        publish: Publish,
        delay_ms: int = 2000,
        claim_ms: int = 10_000,
        batch: int = 500,
        interval_s: float = 0.5,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._uow = uow
        self._publish = publish
        self._delay_ms = delay_ms
        self._claim_ms = claim_ms
        self._batch = batch
        self._interval_s = interval_s
        self._clock = clock  # claims lapse by this clock; tests drive it
        self.relayed = 0

    async def run_once(self) -> int:
        """Claim, publish and delete one batch of due rows; how many were published."""
        now = self._clock()
        events = await self._uow.write(
            lambda tx: tx.outbox.claim(
                older_than=now - self._delay_ms,
                now=now,
                until=now + self._claim_ms,
                limit=self._batch,
            )
        )
        if not events:
            return 0
        # A failure here leaves the rows claimed: they are tried again when the claim lapses.
        await self._publish(events)
        keys = [(e.channel_id, e.seq) for e in events]
        await self._uow.write(lambda tx: tx.outbox.delete(keys))
        self.relayed += len(events)
        log.info("outbox relay published %d events the fast path missed", len(events))
        return len(events)

    async def run(self) -> None:
        """Relay until cancelled; a full batch is followed at once by the next."""
        outage = OutageLog(log, "outbox relay")
        while True:
            try:
                full = await self.run_once() >= self._batch
            except Exception as exc:
                outage.failed(exc)
                full = False
            else:
                outage.ok()
            if not full:
                await asyncio.sleep(self._interval_s)
