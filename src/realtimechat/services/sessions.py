"""Which logins are revoked: the database's set, cached on each node.

Authenticating a request must cost no I/O, so each node keeps the revoked logins
in memory: its own revocations at once, other nodes' within one poll of the
database (`revocation_poll_s`). An entry lasts until every access token of that
login has expired anyway, so the set stays as small as the recent sign-outs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

from realtimechat.ids import now_ms
from realtimechat.observability import metrics
from realtimechat.observability.outage import OutageLog
from realtimechat.services.uow import UnitOfWork

log = logging.getLogger(__name__)

# Polls re-read this far back, so a revocation committed late, or stamped by a node
# whose clock is a little behind, is still seen.
OVERLAP_MS = 60_000

OnRevoked = Callable[[Collection[str]], object]


class Revocations:
    """The revoked logins this node knows, with listeners told of each new one."""

    def __init__(
        self, *, uow: UnitOfWork, poll_s: float, clock: Callable[[], int] = now_ms
    ) -> None:
        self._uow = uow
        self._poll_s = poll_s
        self._clock = clock
        self._revoked: dict[str, int] = {}  # session id -> when its last token expires
        self._polled_at: int | None = None
        self._listeners: list[OnRevoked] = []
        self._task: asyncio.Task[None] | None = None

    def is_revoked(self, session_id: str) -> bool:
        expires_at = self._revoked.get(session_id)
        return expires_at is not None and expires_at > self._clock()

    def on_revoked(self, listener: OnRevoked) -> None:
        """Call `listener` with the ids of logins newly learned to be revoked."""
        self._listeners.append(listener)

    def learn(self, revoked: Collection[tuple[str, int]]) -> list[str]:
        """Add (session id, expires_at) pairs; tells the listeners of the new ones."""
        new = [sid for sid, _ in revoked if sid not in self._revoked]
        for sid, expires_at in revoked:
            self._revoked[sid] = max(expires_at, self._revoked.get(sid, 0))
        if new:
            metrics.SESSIONS_REVOKED.inc(len(new))
            for listener in self._listeners:
                try:
                    listener(new)
                except Exception:
                    log.exception("a revocation listener failed")
        return new

    async def refresh(self) -> list[str]:
        """Read revocations from the database (all at first, then recent ones)."""
        now = self._clock()
        since = 0 if self._polled_at is None else self._polled_at - OVERLAP_MS
        found = await self._uow.read(lambda tx: tx.sessions.revoked_since(since, now))
        self._polled_at = now
        self._revoked = {sid: exp for sid, exp in self._revoked.items() if exp > now}
        return self.learn(found)

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        # Meanwhile a node keeps refusing the sessions it already knows are revoked.
        outage = OutageLog(log, "reading revocations")
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.refresh()
            except Exception as exc:
                outage.failed(exc)
            else:
                outage.ok()
