"""Rate limits shared through a real redis-server, and the local fallback when it is gone.

The back-off runs on a fake clock, so the tests step over it instead of sleeping; the
only real waits are the Redis timeouts the hung-server test sets out to measure.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable

import pytest

from realtimechat.resilience.ratelimit import Budget, RateLimiter, RateLimitExceeded
from tests.redis_server import redis_server
from tests.support import ManualClock

LOGGER = "realtimechat.resilience.ratelimit"


async def timed(hit: Awaitable[Budget]) -> tuple[Budget, float]:
    started = time.perf_counter()
    budget = await hit
    return budget, time.perf_counter() - started


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_two_limiters_on_one_redis_share_a_budget() -> None:
    async with redis_server() as redis:
        a, b = RateLimiter(redis.url), RateLimiter(redis.url)
        try:
            for i in range(6):
                budget = await (a, b)[i % 2].hit("user:shared", 6)
                assert budget.limit == 6
                assert budget.remaining == 5 - i
            for limiter in (a, b):
                with pytest.raises(RateLimitExceeded) as exceeded:
                    await limiter.hit("user:shared", 6)
                assert exceeded.value.budget.remaining == 0
                assert exceeded.value.retry_after_s >= 1
            # Other keys keep their own budget.
            assert (await b.hit("user:other", 6)).remaining == 5
            # Local hits (per-frame limits) are counted on each node alone.
            for limiter in (a, b):
                for _ in range(2):
                    await limiter.hit("ws:frames", 2, local=True)
                with pytest.raises(RateLimitExceeded):
                    await limiter.hit("ws:frames", 2, local=True)
            assert a.health() == b.health() == ("ok", None)
            assert a.fallbacks == b.fallbacks == 0
        finally:
            await a.close()
            await b.close()


async def test_outage_counts_locally_then_returns_to_the_shared_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = ManualClock()
    async with redis_server() as redis:
        a = RateLimiter(redis.url, timeout_s=1.0, retry_s=0.5, clock=clock)
        b = RateLimiter(redis.url, timeout_s=1.0, retry_s=0.5, clock=clock)
        try:
            await a.hit("user:1", 5)
            await b.hit("user:1", 5)
            await asyncio.to_thread(redis.kill)

            # Requests keep succeeding, on a's own (fresh) local budget of 5.
            for i in range(5):
                budget, elapsed = await timed(a.hit("user:1", 5))
                assert budget.remaining == 4 - i
                if i:
                    assert elapsed < 0.1  # the timeout is 1 s: no Redis call was made
            with pytest.raises(RateLimitExceeded):
                await a.hit("user:1", 5)
            status, reason = a.health()
            assert status == "degraded"
            assert reason is not None
            assert "ConnectionError" in reason
            assert a.fallbacks == 6
            assert (await b.hit("user:1", 5)).remaining == 4  # b's own local budget
            assert b.health()[0] == "degraded"

            # After the back-off one request probes; Redis is still down, so it doubles.
            clock.advance(0.5)
            await a.hit("user:2", 5)
            assert len(records(caplog, logging.DEBUG)) == 1
            clock.advance(0.5)
            await a.hit("user:2", 5)
            assert len(records(caplog, logging.DEBUG)) == 1  # 1 s back-off: no probe yet
            assert a.health()[0] == "degraded"

            await asyncio.to_thread(redis.start)  # same port, empty
            clock.advance(0.5)
            fallbacks = a.fallbacks
            for i in range(3):
                budget = await (a, b)[i % 2].hit("user:3", 3)
                assert budget.remaining == 2 - i
            for limiter in (a, b):
                with pytest.raises(RateLimitExceeded):
                    await limiter.hit("user:3", 3)
            assert a.health() == b.health() == ("ok", None)
            assert a.fallbacks == fallbacks
            # One warning going down and one info coming back, per limiter.
            assert len(records(caplog, logging.WARNING)) == 2
            assert len(records(caplog, logging.INFO)) == 2
        finally:
            await a.close()
            await b.close()


async def test_a_hung_redis_costs_one_timeout_per_back_off() -> None:
    clock = ManualClock()
    timeout_s = 0.3
    async with redis_server() as redis:
        limiter = RateLimiter(redis.url, timeout_s=timeout_s, retry_s=0.5, clock=clock)
        try:
            await limiter.hit("user:1", 100)
            assert redis.process is not None
            # Stopped, not killed: connections are accepted and then nothing answers.
            redis.process.send_signal(signal.SIGSTOP)

            _, elapsed = await timed(limiter.hit("user:1", 100))
            assert 0.2 < elapsed < timeout_s + 0.5
            status, reason = limiter.health()
            assert status == "degraded"
            assert reason is not None
            assert "Timeout" in reason

            for _ in range(20):
                _, elapsed = await timed(limiter.hit("user:1", 100))
                assert elapsed < timeout_s / 3

            # Back-off over: of many concurrent requests, one probes and waits, the
            # rest are answered locally at once.
            clock.advance(0.5)
            results = await asyncio.gather(*(timed(limiter.hit("user:1", 100)) for _ in range(10)))
            slow = [elapsed for _, elapsed in results if elapsed >= timeout_s / 3]
            assert len(slow) == 1
            assert slow[0] < timeout_s + 0.5
            assert limiter.fallbacks == 1 + 20 + 10
            assert limiter.health()[0] == "degraded"
        finally:
            await limiter.close()
