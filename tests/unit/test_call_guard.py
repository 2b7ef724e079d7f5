"""The generic call guard under a policy of its caller's own errors (none of the providers')."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from realtimechat.resilience.guard import CallGuard, Verdict
from tests.support import ManualClock


class Down(Exception):
    pass


class Busy(Exception):
    """The dependency answered: it is up, it just said no."""


class Shed(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Policy:
    def classify(self, exc: Exception) -> tuple[Verdict, str]:
        if isinstance(exc, Down):
            return "down", "unavailable"
        if isinstance(exc, Busy):
            return "answered", "rejected"
        return "bug", "error"

    def refused(self, message: str, retry_after: float | None) -> Exception:
        return Shed(message, retry_after)

    def timed_out(self, message: str) -> Exception:
        return Down(message)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 1.0
    concurrency: int = 2
    breaker_failures: int = 2
    breaker_reset_s: float = 10.0


def state(guard: CallGuard) -> str:
    """Read afresh (a helper, so mypy does not narrow it between reads)."""
    return guard.state


async def fails_with(exc: Exception) -> str:
    raise exc


async def test_outages_open_it_answers_close_it_and_refusals_are_the_callers_type() -> None:
    clock = ManualClock()
    guard = CallGuard("unit-dep", Limits(), failures=Policy(), clock=clock)
    for _ in range(2):
        with pytest.raises(Down):
            await guard.call(lambda: fails_with(Down("boom")))
    assert state(guard) == "open"

    with pytest.raises(Shed, match="unit-dep circuit open") as info:
        await guard.call(lambda: fails_with(AssertionError("not called")))
    assert info.value.retry_after == pytest.approx(10)

    clock.advance(10)
    with pytest.raises(Busy):  # the trial reached a dependency that is up
        await guard.call(lambda: fails_with(Busy("later")))
    assert state(guard) == "closed"
    assert guard.health()["rejected"] == 1


async def test_our_bugs_leave_the_breaker_alone_and_timeouts_are_outages() -> None:
    guard = CallGuard("unit-dep-2", Limits(timeout_s=0.01, breaker_failures=1), failures=Policy())
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await guard.call(lambda: fails_with(RuntimeError("ours")))
    assert state(guard) == "closed"

    never = asyncio.Event()

    async def hang() -> str:
        await never.wait()
        return "unreachable"

    with pytest.raises(Down, match=r"timed out after 0\.01 s"):
        await guard.call(hang)
    assert state(guard) == "open"
