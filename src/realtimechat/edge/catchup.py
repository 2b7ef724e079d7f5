"""Catching up from the database on what the bus did not bring.

The bus only fans out; the database is the truth. A node compares the last seq of
the channels its connections follow with the highest seq the bus has brought it.
While the bus is degraded (Redis down) that is how events written on other nodes
reach this node's connections, every `fast_s`; while it is healthy, a slower check
covers an event whose publish was lost (its node died between commit and publish).
A gap seen while the bus is healthy must persist for one more check before it is
filled, since the event may simply be on its way. While the bus is degraded, users
connected here who were added to a channel elsewhere are found in the database too,
and their join is routed as the bus would have routed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from realtimechat.domain.models import Event
from realtimechat.edge.hub import Hub
from realtimechat.ids import now_ms
from realtimechat.observability.outage import OutageLog

log = logging.getLogger(__name__)

LastSeqs = Callable[[list[str]], Awaitable[dict[str, int]]]
JoinsSince = Callable[[list[str], int], Awaitable[list[Event]]]
Health = Callable[[], tuple[str, str | None]]
CHUNK = 500  # ids per query
# Joins from shortly before the outage was noticed count too: their publish may be
# what failed first.
JOIN_MARGIN_MS = 10_000


class CatchUp:
    """A task that polls channels' last seqs and tells the hub where the bus is behind."""

    def __init__(
        self,
        *,
        hub: Hub,
        bus_health: Health,
        last_seqs: LastSeqs,
        joins_since: JoinsSince,
        fast_s: float,
        slow_s: float,
    ) -> None:
        self._hub = hub
        self._bus_health = bus_health
        self._last_seqs = last_seqs
        self._joins_since = joins_since
        self._degraded_since: int | None = None
        self._fast_s = fast_s
        self._slow_s = slow_s
        self._suspect: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self.filled = 0  # channels caught up from the database

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bus-catch-up")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        outage = OutageLog(log, "catch-up check")
        while True:
            degraded = self._bus_health()[0] != "ok"
            await asyncio.sleep(self._fast_s if degraded else self._slow_s)
            try:
                await self.check(degraded=self._bus_health()[0] != "ok")
            except Exception as exc:  # the database may be down too; try again next time
                outage.failed(exc)
            else:
                outage.ok()

    async def check(self, *, degraded: bool) -> None:
        """One comparison of the database with what the bus brought."""
        if degraded:
            if self._degraded_since is None:
                self._degraded_since = now_ms() - JOIN_MARGIN_MS
            await self._route_joins(self._degraded_since)
        else:
            self._degraded_since = None
        followed = self._hub.followed()
        behind: dict[str, int] = {}
        for i in range(0, len(followed), CHUNK):
            for channel_id, last in (await self._last_seqs(followed[i : i + CHUNK])).items():
                if last > self._hub.published_seq.get(channel_id, 0):
                    behind[channel_id] = last
        for channel_id, last in behind.items():
            # Healthy bus: act only on what was missing at the last check already.
            stale = self._suspect.get(channel_id, 0) > self._hub.published_seq.get(channel_id, 0)
            if degraded or stale:
                self._hub.catch_up(channel_id, last)
                self.filled += 1
        self._suspect = {
            ch: last for ch, last in behind.items() if last > self._hub.published_seq.get(ch, 0)
        }

    async def _route_joins(self, since: int) -> None:
        users = self._hub.users()
        for i in range(0, len(users), CHUNK):
            for ev in await self._joins_since(users[i : i + CHUNK], since):
                if self._hub.missing_join(ev):
                    self._hub.on_event(ev)
