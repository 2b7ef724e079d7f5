"""Per-key request budgets on the `limits` library: shared through Redis when configured.

With no Redis URL every node counts in memory. With one, all nodes share one budget
per key in Redis, and a Redis outage falls back to the local in-memory counters
instead of failing requests (DESIGN.md, "Resilience").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtimechat.domain.errors import RateLimited
from realtimechat.observability import metrics
from realtimechat_client.backoff import Backoff

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0
KEY_PREFIX = "rtc:limits"


@dataclass(frozen=True, slots=True)
class Budget:
    """What is left of a key's budget after a request: the RateLimit-* header values."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimitExceeded(RateLimited):
    """RateLimited with the budget, so the edge can set the RateLimit-* headers."""

    def __init__(self, budget: Budget) -> None:
        super().__init__(max(1, budget.reset_s), f"limit of {budget.limit} per minute reached")
        self.budget = budget


class RateLimiter:
    """Sliding-window counters per key, in Redis when `redis_url` is set, else in memory.

    Every Redis round trip of a request is bounded by `timeout_s` in total. When one
    fails, the request is counted on the local limiter instead, and so is every request
    of the following back-off (`retry_s`, doubling up to 30 s); then one request probes
    Redis again. While degraded each node enforces the limit on its own, so a user may
    get up to one budget per node: looser, but no request fails because Redis did.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        timeout_s: float = 1.0,
        retry_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._local = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._clock = clock
        self._pool: ConnectionPool | None = None
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if redis_url is not None:
            # No client retries: the back-off below decides when to try again, and a
            # retried timeout would cost a multiple of timeout_s.
            self._pool = ConnectionPool.from_url(
                redis_url,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            # We own the pool, so close() can release it; the URL given to `limits` is a
            # placeholder because its own parser rejects valid URLs without a port.
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = RedisStorage(
                "async+redis://", implementation="redispy", key_prefix=KEY_PREFIX, **options
            )
            self._shared = SlidingWindowCounterRateLimiter(storage)
        self.fallbacks = 0  # requests counted locally because Redis was unavailable
        self._backoff = Backoff(retry_s, MAX_BACKOFF_S, jitter="none")
        self._probes_failed = 0
        self._backoff_s = retry_s
        self._retry_at = 0.0
        self._down: str | None = None
        self._probing = False

    async def hit(self, key: str, per_minute: int, *, local: bool = False) -> Budget:
        """Spend one request of `key`'s budget; RateLimitExceeded when none is left.

        `local`: count on this node only, never through Redis (for per-frame limits,
        where two Redis round trips per WebSocket frame would cost more than they
        protect: a user's budget is then one per node).
        """
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        shared = None if local else self._shared
        spent: tuple[bool, Budget] | None = None
        if shared is not None:
            probe = self._down is not None
            if not probe or (not self._probing and self._clock() >= self._retry_at):
                spent = await self._try_shared(shared, item, key, probe=probe)
            if spent is None:
                self.fallbacks += 1
        if spent is None:
            spent = await self._spend(self._local, item, key)
        allowed, budget = spent
        if not allowed:
            metrics.RATE_LIMITED.labels(key.partition(":")[0]).inc()
            raise RateLimitExceeded(budget)
        return budget

    def health(self) -> tuple[str, str | None]:
        """("ok", None), or ("degraded", why) while counting locally during a Redis outage."""
        if self._down is None:
            return "ok", None
        return "degraded", self._down

    async def close(self) -> None:
        """Release the Redis connections; nothing to do in memory mode."""
        if self._pool is not None:
            await self._pool.aclose()

    async def _try_shared(
        self,
        shared: SlidingWindowCounterRateLimiter,
        item: RateLimitItemPerMinute,
        key: str,
        *,
        probe: bool,
    ) -> tuple[bool, Budget] | None:
        # While a probe is out, the other requests stay local rather than all paying
        # the timeout of a Redis that is probably still down.
        if probe:
            self._probing = True
        try:
            async with asyncio.timeout(self._timeout_s):
                spent = await self._spend(shared, item, key)
        except Exception as exc:  # any storage failure: the limiter must not fail requests
            self._failed(exc, probe=probe)
            return None
        finally:
            if probe:
                self._probing = False
        self._recovered()
        return spent

    def _failed(self, exc: Exception, *, probe: bool) -> None:
        error = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
        reason = f"Redis unavailable, limits are per node ({error})"
        if self._down is None:
            self._probes_failed = 0
            self._backoff_s = self._backoff.delay(0)
            log.warning("rate limits: %s; retrying in %.1f s", reason, self._backoff_s)
        elif probe:
            self._probes_failed += 1
            self._backoff_s = self._backoff.delay(self._probes_failed)
            log.debug("rate limits: Redis still unavailable; retrying in %.1f s", self._backoff_s)
        else:
            # A request that set out before the outage was noticed: the back-off is
            # already running, and doubling it here would punish concurrency.
            return
        self._down = reason
        self._retry_at = self._clock() + self._backoff_s

    def _recovered(self) -> None:
        if self._down is not None:
            log.info("rate limits: Redis is back (%d requests counted locally)", self.fallbacks)
        self._down = None
        self._backoff_s = self._retry_s

    @staticmethod
    async def _spend(
        limiter: SlidingWindowCounterRateLimiter, item: RateLimitItemPerMinute, key: str
    ) -> tuple[bool, Budget]:
        allowed = await limiter.hit(item, key)
        stats = await limiter.get_window_stats(item, key)
        budget = Budget(
            item.amount, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - time.time()))
        )
        return allowed, budget
