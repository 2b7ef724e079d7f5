"""The call guard of one provider: the generic guard, told what our provider errors mean."""

from __future__ import annotations

import time
from collections.abc import Callable

from realtimechat.providers.base import ProviderError, ProviderUnavailable, RateLimited, Refused
from realtimechat.resilience.guard import CallGuard, Verdict
from realtimechat.settings import ProviderSettings


class ProviderFailures:
    """Outages open the breaker; rate limits and rejections are answers of a provider that
    is up, so they close it like a success; anything else is our bug, not its outage."""

    def classify(self, exc: Exception) -> tuple[Verdict, str]:
        """(verdict, metrics outcome) of an exception a send raised."""
        if isinstance(exc, ProviderUnavailable):
            return "down", "unavailable"
        if isinstance(exc, RateLimited):
            return "answered", "rate_limited"
        if isinstance(exc, ProviderError):
            return "answered", "rejected"
        return "bug", "error"

    def refused(self, message: str, retry_after: float | None) -> Exception:
        """Our own guard did not make the call: no attempt of the job is spent."""
        return Refused(message, retry_after=retry_after)

    def timed_out(self, message: str) -> Exception:
        """A provider that does not answer in time is unavailable."""
        return ProviderUnavailable(message)


class ProviderGuard(CallGuard):
    """Guards calls to one provider; share one instance per provider per process."""

    def __init__(
        self,
        name: str,
        settings: ProviderSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, settings, failures=ProviderFailures(), clock=clock)
        self.settings = settings
