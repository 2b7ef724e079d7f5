"""Liveness and readiness: each dependency checked with a short timeout, and the verdict.

This module knows no adapter. It is handed the few calls each check needs (the
probes below, which the database, the bus, the rate limiter and the object store
already answer), so the composition root wires it and it stays below all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from realtimechat.settings import Settings

Check = dict[str, object]


class DatabaseProbe(Protocol):
    async def ping(self) -> None: ...

    def pool_status(self) -> dict[str, int]: ...


class BusProbe(Protocol):
    def health(self) -> tuple[str, str | None]: ...

    async def ping(self) -> None: ...


class LimiterProbe(Protocol):
    def health(self) -> tuple[str, str | None]: ...


class StoreProbe(Protocol):
    @property
    def name(self) -> str: ...

    async def ping(self) -> None: ...


@dataclass(frozen=True)
class Readiness:
    """The verdict of /readyz and the check of each dependency behind it."""

    status: str  # ok | degraded | down | draining
    checks: dict[str, Check]

    @property
    def http_status(self) -> int:
        """503 while the node should get no traffic, else 200 (degraded still serves)."""
        return 503 if self.status in ("draining", "down") else 200

    def statuses(self) -> dict[str, Check]:
        """Only each check's status: what anyone may see (details are the operator's)."""
        return {name: {"status": check["status"]} for name, check in self.checks.items()}


class Health:
    """What a node says about itself to probes and the operator."""

    def __init__(
        self,
        *,
        settings: Settings,
        database: DatabaseProbe,
        bus: BusProbe,
        limiter: LimiterProbe,
        store: StoreProbe,
        providers: Callable[[], Mapping[str, Mapping[str, object]]],
        job_counts: Callable[[], Awaitable[object]],
        draining: Callable[[], bool],
        refresh_stored: Callable[[], Awaitable[object]],
    ) -> None:
        self._settings = settings
        self._database = database
        self._bus = bus
        self._limiter = limiter
        self._store = store
        self._providers = providers
        self._job_counts = job_counts
        self._draining = draining
        self._refresh_stored = refresh_stored

    def live(self) -> Check:
        """The process is up and its event loop turns (answering is the proof)."""
        return {"status": "ok"}

    async def ready(self) -> Readiness:
        """Every dependency's check; `down` if one is down, `degraded` if one is not ok."""
        checks: dict[str, Check] = {
            "database": await self._database_check(),
            "bus": await self._bus_check(),
            "rate_limits": self._limits_check(),
            "storage": await self._storage_check(),
            "notifications": await self._notifications_check(),
        }
        if self._draining():
            status = "draining"
        elif any(c["status"] == "down" for c in checks.values()):
            status = "down"
        elif any(c["status"] != "ok" for c in checks.values()):
            status = "degraded"
        else:
            status = "ok"
        return Readiness(status, checks)

    async def refresh_metrics(self) -> None:
        """Read the stored figures (jobs, outbox, storage) into the gauges, if in time."""
        with contextlib.suppress(Exception):  # a scrape must not fail with the database
            await asyncio.wait_for(self._refresh_stored(), self._settings.db.health_timeout_s)

    async def _database_check(self) -> Check:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._database.ping(), self._settings.db.health_timeout_s)
        except Exception as exc:
            return {
                "status": "down",
                "latency_ms": _ms_since(started),
                "detail": exc.__class__.__name__,
            }
        return {
            "status": "ok",
            "latency_ms": _ms_since(started),
            "pool": self._database.pool_status(),
        }

    async def _bus_check(self) -> Check:
        """The bus's own view (degraded while its loops fail) and a round trip to it now."""
        status, detail = self._bus.health()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._bus.ping(), self._settings.redis.timeout_s)
        except Exception as exc:
            return {"status": "degraded", "detail": detail or repr(exc)}
        latency = _ms_since(started)
        return {"status": status, "latency_ms": latency, **({"detail": detail} if detail else {})}

    def _limits_check(self) -> Check:
        status, detail = self._limiter.health()
        return {"status": status, **({"detail": detail} if detail else {})}

    async def _storage_check(self) -> Check:
        """The object store answers (uploads and downloads need it; chat does not: degraded)."""
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._store.ping(), self._settings.files.timeout_s)
        except Exception as exc:
            return {"status": "degraded", "backend": self._store.name, "detail": repr(exc)}
        return {"status": "ok", "backend": self._store.name, "latency_ms": _ms_since(started)}

    async def _notifications_check(self) -> Check:
        """Each provider's breaker and bulkhead (where this node dispatches), and jobs by state.

        A provider down is `degraded`, never `down`: chat goes on, notifications wait.
        """
        check: Check = {"status": "ok"}
        for kind, provider in self._providers().items():
            check[kind] = dict(provider)
            if provider.get("state") != "closed":
                check["status"] = "degraded"
        try:
            check["jobs"] = await asyncio.wait_for(
                self._job_counts(), self._settings.db.health_timeout_s
            )
        except Exception as exc:
            check["jobs"] = {"detail": exc.__class__.__name__}
        return check


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
