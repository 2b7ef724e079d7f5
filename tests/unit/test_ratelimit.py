"""The in-memory limiter, and that configuring Redis does no I/O until the first request."""

from __future__ import annotations

import pytest

from realtimechat.resilience.ratelimit import RateLimiter, RateLimitExceeded


async def test_memory_budget_counts_down_then_refuses() -> None:
    limiter = RateLimiter()
    remaining = [(await limiter.hit("user:1", 3)).remaining for _ in range(3)]
    assert remaining == [2, 1, 0]
    with pytest.raises(RateLimitExceeded) as exceeded:
        await limiter.hit("user:1", 3)
    budget = exceeded.value.budget
    assert budget.limit == 3
    assert budget.remaining == 0
    assert exceeded.value.retry_after_s >= 1
    assert budget.headers()["RateLimit-Limit"] == "3"
    assert (await limiter.hit("user:2", 3)).remaining == 2
    assert limiter.health() == ("ok", None)
    assert limiter.fallbacks == 0
    await limiter.close()


async def test_redis_url_connects_lazily() -> None:
    # A TEST-NET address: constructing, asking for health and closing must not touch it.
    limiter = RateLimiter("redis://192.0.2.1:6379/0", timeout_s=0.1)
    assert limiter.health() == ("ok", None)
    assert limiter.fallbacks == 0
    await limiter.close()
