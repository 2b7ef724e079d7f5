"""A call guard for one dependency: circuit breaker, then bulkhead, then timeout.

The guard knows no dependency's errors. Whoever builds it passes a `Failures`
policy that says which exceptions mean "the dependency is down" (they open the
breaker), which are answers from a dependency that is up (they close it), and
which are neither (our own bugs); and what to raise when the guard itself refuses
or times out a call. So adapters depend on this module, never the reverse.

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
from typing import Literal, Protocol, TypedDict, TypeVar

from realtimechat.observability import metrics

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half-open"]
# down: an outage, counts towards opening; answered: the dependency is up (it refused
# or rate limited us), closes like a success; bug: ours, leaves the breaker alone.
Verdict = Literal["down", "answered", "bug"]


class GuardLimits(Protocol):
    """How calls are bounded: any settings object with these fields."""

    @property
    def timeout_s(self) -> float: ...  # every call, start to end

    @property
    def concurrency(self) -> int: ...  # bulkhead: calls in flight at once

    @property
    def breaker_failures(self) -> int: ...  # consecutive outages that open the breaker

    @property
    def breaker_reset_s(self) -> float: ...  # open this long, then one trial call


class Failures(Protocol):
    """The guarded side's errors: how to read them and what the guard raises itself."""

    def classify(self, exc: Exception) -> tuple[Verdict, str]:
        """The verdict on an exception a call raised, and its outcome label for metrics."""
        ...

    def refused(self, message: str, retry_after: float | None) -> Exception:
        """What to raise when the open breaker or the full bulkhead refuses a call."""
        ...

    def timed_out(self, message: str) -> Exception:
        """What to raise when a call outlives the timeout (then classified like any other)."""
        ...


class GuardHealth(TypedDict):
    """What `CallGuard.health()` reports."""

    state: BreakerState
    consecutive_failures: int
    in_flight: int
    calls: int  # calls that reached the dependency
    failures: int  # of those, the ones that raised
    rejected: int  # calls refused by the open breaker or the full bulkhead
    last_latency_ms: float | None
    last_error: str | None


class CallGuard:
    """Guards calls to one dependency; share one instance per dependency per process."""

    def __init__(
        self,
        name: str,
        limits: GuardLimits,
        *,
        failures: Failures,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.limits = limits
        self._failures_policy = failures
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
        return self._opened_at + self.limits.breaker_reset_s - self._clock()

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

    def _refuse(self, reason: str, retry_after: float | None) -> Exception:
        self._rejected += 1
        metrics.PROVIDER_CALLS.labels(self.name, "refused").inc()
        return self._failures_policy.refused(f"{self.name} {reason}", retry_after)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` under the breaker, the bulkhead and the timeout."""
        trial = False
        if self._open:
            remaining = self._open_remaining()
            if remaining > 0:
                raise self._refuse("circuit open", remaining)
            if self._trial_in_flight:
                # The trial settles within one timeout; until then the circuit stays shut.
                raise self._refuse("circuit open (trial call in flight)", self.limits.timeout_s)
            trial = self._trial_in_flight = True
        if self._in_flight >= self.limits.concurrency:
            if trial:
                self._trial_in_flight = False
            # Refused at once rather than queued: the caller retries later, and a queue
            # here would only hold its lease while the dependency is slow.
            raise self._refuse("bulkhead full", None)

        self._in_flight += 1
        self._calls += 1
        # Latency is a measurement, not a breaker decision: real time even under a test clock.
        started = time.perf_counter()
        try:
            try:
                async with asyncio.timeout(self.limits.timeout_s):
                    result = await fn()
            except TimeoutError as exc:
                raise self._failures_policy.timed_out(
                    f"{self.name} timed out after {self.limits.timeout_s:g} s"
                ) from exc
        except Exception as exc:
            verdict, outcome = self._failures_policy.classify(exc)
            self._failed(exc, down=verdict == "down")
            if verdict == "answered":
                self._succeeded()
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

    def _failed(self, exc: Exception, *, down: bool) -> None:
        self._failures += 1
        self._last_error = f"{type(exc).__name__}: {exc}"
        if not down:
            return
        self._consecutive += 1
        # A failed trial (half-open) re-opens at once; a closed circuit needs the full run.
        if self._open or self._consecutive >= self.limits.breaker_failures:
            self._open = True
            self._opened_at = self._clock()
