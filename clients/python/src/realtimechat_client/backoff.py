"""Exponential backoff: the one rule every retry loop of the client and the server follows.

The ceiling of attempt `n` (0-based) is `min(cap_s, base_s * 2**n)`; the jitter spreads the
delay below it, so that many clients that failed together do not retry together:

- `"full"`: uniform in `[0, ceiling]` (the AWS "full jitter"; the client's default);
- `"half"`: uniform in `[ceiling / 2, ceiling]` (never much sooner than the ceiling);
- `"none"`: the ceiling itself (deterministic, for a single prober).

A `floor_s` (a server's `Retry-After`) is honoured even above the cap: the server knows
better when it will be ready. Standard library only: the server uses it too.
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["Backoff", "Jitter"]

Jitter = Literal["full", "half", "none"]

# 2**62 seconds is beyond any cap: a larger exponent only risks an OverflowError.
_MAX_EXPONENT = 62
_SHARED_RNG = random.Random()


class Backoff:
    """Delays for attempt 0, 1, 2, … of a retry loop (see the module docstring)."""

    __slots__ = ("_rng", "base_s", "cap_s", "jitter")

    def __init__(
        self,
        base_s: float,
        cap_s: float,
        *,
        jitter: Jitter = "full",
        rng: random.Random | None = None,
    ) -> None:
        if base_s < 0 or cap_s < 0:
            raise ValueError(f"backoff needs base_s, cap_s >= 0, not {base_s}, {cap_s}")
        if jitter not in ("full", "half", "none"):
            raise ValueError(f"unknown jitter {jitter!r}")
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter: Jitter = jitter
        self._rng = rng if rng is not None else _SHARED_RNG

    def ceiling(self, attempt: int) -> float:
        """The longest delay of `attempt` (0-based): `min(cap_s, base_s * 2**attempt)`."""
        return min(self.cap_s, self.base_s * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int, *, floor_s: float | None = None) -> float:
        """Seconds to wait before retry `attempt` (0-based), never less than `floor_s`."""
        top = self.ceiling(attempt)
        if self.jitter == "full":
            wait = self._rng.uniform(0.0, top)
        elif self.jitter == "half":
            wait = self._rng.uniform(top / 2, top)
        else:
            wait = top
        if floor_s is not None and floor_s > wait:
            return floor_s
        return wait
