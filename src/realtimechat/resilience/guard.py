"""One provider's call guard: circuit breaker, then bulkhead, then timeout.

The breaker is written here rather than taken from a library: `pybreaker` runs
coroutines only through Tornado and `purgatory` lets every concurrent call through
while half-open (we want exactly one trial), and both read the wall clock
themselves, so neither takes the monotonic, injectable clock that lets tests step
through open -> half-open -> closed without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypedDict, TypeVar

from realtimechat.observability import metrics
from realtimechat.providers.base import (
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Refused,
)
from realtimechat.settings import ProviderSettings

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half-open"]


class GuardHealth(TypedDict):
    """What `ProviderGuard.health()` reports."""

    state: BreakerState
    consecutive_failures: int
    in_flight: int
    calls: int  # calls that reached the provider
    failures: int  # of those, the ones that raised
    rejected: int  # calls refused by the open breaker or the full bulkhead
    last_latency_ms: float | None
    last_error: str | None


class ProviderGuard:
    """Guards calls to one provider; share one instance per provider per process."""

    def __init__(
        self,
        name: str,
        settings: ProviderSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._open = False
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._consecutive = 0
        self._in_flight = 0
        self._calls = 0
        self._failures = 0
        self._rejected = 0
        self._last_latency_ms: float | None = None
        self._last_error: str | None = None
        metrics.BREAKER_STATE.labels(name).set_function(lambda: metrics.BREAKER_VALUES[self.state])
        metrics.PROVIDER_IN_FLIGHT.labels(name).set_function(lambda: self._in_flight)

    @property
    def state(self) -> BreakerState:
        """closed, open, or half-open (reset time passed: the next call is the trial)."""
        if not self._open:
            return "closed"
        return "half-open" if self._open_remaining() <= 0 else "open"

    def _open_remaining(self) -> float:
        return self._opened_at + self.settings.breaker_reset_s - self._clock()

    def health(self) -> GuardHealth:
        """Breaker state and call statistics, for health checks and metrics."""
        return {
            "state": self.state,
            "consecutive_failures": self._consecutive,
            "in_flight": self._in_flight,
            "calls": self._calls,
            "failures": self._failures,
            "rejected": self._rejected,
            "last_latency_ms": self._last_latency_ms,
            "last_error": self._last_error,
        }

    def _refuse(self, reason: str, retry_after: float | None) -> Refused:
        self._rejected += 1
        metrics.PROVIDER_CALLS.labels(self.name, "refused").inc()
        return Refused(f"{self.name} {reason}", retry_after=retry_after)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` under the breaker, the bulkhead and the timeout."""
        trial = False
        if self._open:
            remaining = self._open_remaining()
            if remaining > 0:
                raise self._refuse("circuit open", remaining)
            if self._trial_in_flight:
                # The trial settles within one timeout; until then the circuit stays shut.
                raise self._refuse("circuit open (trial call in flight)", self.settings.timeout_s)
            trial = self._trial_in_flight = True
        if self._in_flight >= self.settings.concurrency:
            if trial:
                self._trial_in_flight = False
            # Refused at once rather than queued: the worker retries the job later,
            # and a queue here would only hold its lease while the provider is slow.
            raise self._refuse("bulkhead full", None)

        self._in_flight += 1
        self._calls += 1
        # Latency is a measurement, not a breaker decision: real time even under a test clock.
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    result = await fn()
            except TimeoutError as exc:
                raise ProviderUnavailable(
                    f"{self.name} timed out after {self.settings.timeout_s:g} s"
                ) from exc
        except ProviderUnavailable as exc:
            self._failed(exc, provider_down=True)
            metrics.PROVIDER_CALLS.labels(self.name, "unavailable").inc()
            raise
        except Exception as exc:
            # RateLimited and Rejected are answers: the provider is up, so they close
            # the breaker like a success. Anything else is our bug, not its outage.
            self._failed(exc, provider_down=False)
            if isinstance(exc, ProviderError):
                self._succeeded()
            outcome = (
                "rate_limited"
                if isinstance(exc, RateLimited)
                else "rejected"
                if isinstance(exc, ProviderError)
                else "error"
            )
            metrics.PROVIDER_CALLS.labels(self.name, outcome).inc()
            raise
        else:
            self._succeeded()
            metrics.PROVIDER_CALLS.labels(self.name, "ok").inc()
            return result
        finally:
            self._in_flight -= 1
            if trial:
                self._trial_in_flight = False
            elapsed = time.perf_counter() - started
            self._last_latency_ms = elapsed * 1000
            metrics.PROVIDER_LATENCY.labels(self.name).observe(elapsed)

    def _succeeded(self) -> None:
        self._consecutive = 0
        self._open = False

    def _failed(self, exc: Exception, *, provider_down: bool) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if not provider_down:
            return
        self._consecutive += 1
        # A failed trial (half-open) re-opens at once; a closed circuit needs the full run.
        if self._open or self._consecutive >= self.settings.breaker_failures:
            self._open = True
            self._opened_at = self._clock()
