"""A wall clock in UTC milliseconds that moves only when the test says so."""

from __future__ import annotations


class ManualMsClock:
    """`clock()` is the time in ms; `advance(seconds)` moves it."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)
