"""The one backoff helper (realtimechat_client.backoff), as every retry loop uses it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from realtimechat_client.backoff import Backoff, Jitter

bases = st.floats(min_value=0.0, max_value=10.0, allow_nan=False)
caps = st.floats(min_value=0.0, max_value=120.0, allow_nan=False)
attempts = st.integers(min_value=0, max_value=10_000)
jitters = st.sampled_from(["full", "half", "none"])
seeds = st.integers(min_value=0, max_value=2**32)


@given(base=bases, cap=caps, attempt=attempts, jitter=jitters, seed=seeds)
def test_a_delay_lies_within_its_jitter_range_below_the_ceiling(
    base: float, cap: float, attempt: int, jitter: Jitter, seed: int
) -> None:
    backoff = Backoff(base, cap, jitter=jitter, rng=random.Random(seed))
    top = backoff.ceiling(attempt)
    assert top == min(cap, base * 2.0 ** min(attempt, 62))
    low = {"full": 0.0, "half": top / 2, "none": top}[jitter]
    assert low <= backoff.delay(attempt) <= top <= cap


@given(base=bases, cap=caps, attempt=attempts)
def test_the_ceiling_grows_with_the_attempt_and_stays_at_the_cap(
    base: float, cap: float, attempt: int
) -> None:
    backoff = Backoff(base, cap)
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1) <= cap
    if base >= 1e-6 and attempt >= 64:
        assert backoff.ceiling(attempt) == cap  # huge attempts neither overflow nor drop


@given(base=bases, cap=caps, attempt=attempts, jitter=jitters, floor=caps)
def test_a_floor_is_honoured_even_above_the_cap(
    base: float, cap: float, attempt: int, jitter: Jitter, floor: float
) -> None:
    delay = Backoff(base, cap, jitter=jitter).delay(attempt, floor_s=floor)
    assert delay >= floor
    assert delay <= max(floor, cap)


def test_without_jitter_the_delays_double_from_the_base_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, jitter="none")
    assert [backoff.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_seeded_rng_gives_the_same_delays() -> None:
    one = Backoff(0.05, 2.0, rng=random.Random(7))
    two = Backoff(0.05, 2.0, rng=random.Random(7))
    assert [one.delay(n) for n in range(20)] == [two.delay(n) for n in range(20)]


def test_full_jitter_spreads_the_delays_over_the_whole_range() -> None:
    backoff = Backoff(1.0, 1.0, rng=random.Random(1))
    delays = [backoff.delay(5) for _ in range(2000)]
    assert min(delays) < 0.05
    assert max(delays) > 0.95


def test_a_negative_attempt_counts_as_the_first() -> None:
    assert Backoff(0.25, 4.0, jitter="none").delay(-3) == 0.25


@pytest.mark.parametrize(("base", "cap", "jitter"), [(-1.0, 1.0, "full"), (1.0, 1.0, "some")])
def test_bad_parameters_are_refused(base: float, cap: float, jitter: str) -> None:
    with pytest.raises(ValueError, match=r"backoff|jitter"):
        Backoff(base, cap, jitter=jitter)  # type: ignore[arg-type]
