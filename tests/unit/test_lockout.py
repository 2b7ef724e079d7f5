"""The lockout arithmetic: free failures, doubling locks, the cap, the reset."""

from __future__ import annotations

from realtimechat.domain.lockout import LockoutPolicy

POLICY = LockoutPolicy(free=3, base_ms=1000, max_ms=60_000, reset_ms=3_600_000)


def test_the_free_failures_lock_nothing_then_each_doubles_the_lock() -> None:
    now, failures, last, locks = 10_000_000, 0, 0, []
    for _ in range(6):
        failures, locked_until = POLICY.after_failure(failures, last, now)
        locks.append(locked_until - now if locked_until else 0)
        last = now
    assert locks == [0, 0, 0, 1000, 2000, 4000]


def test_the_lock_is_capped_however_many_failures() -> None:
    failures, locked_until = POLICY.after_failure(10_000, 5, 10)
    assert (failures, locked_until) == (10_001, 10 + 60_000)


def test_a_quiet_hour_starts_the_count_again() -> None:
    now = 100_000_000
    assert POLICY.after_failure(50, now - 3_600_001, now) == (1, 0)
    assert POLICY.after_failure(50, now - 3_600_000, now)[0] == 51


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    assert LockoutPolicy.retry_after_s(10_001, 10_000) == 1
    assert LockoutPolicy.retry_after_s(12_000, 10_000) == 2
    assert LockoutPolicy.retry_after_s(12_001, 10_000) == 3
    assert LockoutPolicy.retry_after_s(9_000, 10_000) == 1
