"""Prometheus metrics of this process, served at /metrics.

Names start with `rtc_`. Label values are bounded sets (provider names, job kinds
and states), never user input.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

PROVIDER_CALLS = Counter(
    "rtc_provider_calls_total",
    "Calls to an external provider by outcome "
    "(ok, unavailable, rate_limited, rejected, refused: not made, breaker or bulkhead).",
    ["provider", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "rtc_provider_call_seconds",
    "Latency of calls that reached an external provider.",
    ["provider"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
)
BREAKER_STATE = Gauge(
    "rtc_provider_breaker_state",
    "Circuit breaker per provider: 0 closed, 1 half-open, 2 open.",
    ["provider"],
)
PROVIDER_IN_FLIGHT = Gauge(
    "rtc_provider_in_flight", "Calls in flight per provider (bulkhead use).", ["provider"]
)
NOTIFICATION_JOBS = Gauge(
    "rtc_notification_jobs",
    "Notification jobs by kind and state, as stored (refreshed on scrape).",
    ["kind", "state"],
)
NOTIFICATION_RESULTS = Counter(
    "rtc_notification_results_total",
    "What this process's dispatcher did with claimed jobs: sent, skipped, retried, dead.",
    ["kind", "result"],
)
JOB_STATES = ("pending", "sending", "sent", "skipped", "dead")
BREAKER_VALUES = {"closed": 0, "half-open": 1, "open": 2}


def set_job_counts(counts: dict[str, dict[str, int]]) -> None:
    """Publish stored job counts; a state with no jobs reads 0, not stale."""
    for kind, states in counts.items():
        for state in JOB_STATES:
            NOTIFICATION_JOBS.labels(kind, state).set(states.get(state, 0))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric, and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
