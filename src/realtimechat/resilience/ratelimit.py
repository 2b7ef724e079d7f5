"""Per-key request budgets on the `limits` library (in-memory here; Redis when scaled out)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from realtimechat.domain.errors import RateLimited


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
    """Sliding-window counters per key."""

    def __init__(self) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}

    async def hit(self, key: str, per_minute: int) -> Budget:
        """Spend one request of `key`'s budget; RateLimitExceeded when none is left."""
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        allowed = await self._limiter.hit(item, key)
        stats = await self._limiter.get_window_stats(item, key)
        budget = Budget(
            per_minute, max(0, stats.remaining), max(0, math.ceil(stats.reset_time - time.time()))
        )
        if not allowed:
            raise RateLimitExceeded(budget)
        return budget
