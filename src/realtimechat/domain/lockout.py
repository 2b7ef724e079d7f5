"""Exponential lockout after failed sign-ins: pure arithmetic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """`free` failures cost nothing; each further one doubles the lock, up to `max_ms`.

    A failure after `reset_ms` of quiet starts the count again.
    """

    free: int = 5
    base_ms: int = 1000
    max_ms: int = 15 * 60 * 1000
    reset_ms: int = 3600 * 1000

    def after_failure(self, failures: int, last_failed_at: int, now: int) -> tuple[int, int]:
        """The (failures, locked_until) after one more failure at `now`."""
        if now - last_failed_at > self.reset_ms:
            failures = 0
        failures += 1
        if failures <= self.free:
            return failures, 0
        # Capped before shifting, so a count in the thousands stays a small number.
        exponent = min(failures - self.free - 1, 30)
        return failures, now + min(self.max_ms, self.base_ms << exponent)

    @staticmethod
    def retry_after_s(locked_until: int, now: int) -> int:
        """Whole seconds until the lock ends (at least 1)."""
        return max(1, -(-(locked_until - now) // 1000))
