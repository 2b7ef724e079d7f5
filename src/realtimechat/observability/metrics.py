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
# --- HTTP (RED per route template, never the raw path) and load shedding
HTTP_REQUESTS = Counter(
    "rtc_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "rtc_http_request_duration_seconds",
    "HTTP request duration by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_IN_FLIGHT = Gauge("rtc_http_in_flight", "HTTP requests being served.")
SHED = Counter(
    "rtc_shed_total",
    "Requests refused to protect the node: in_flight, body_too_large, db_queue, read_queue.",
    ["reason"],
)
RATE_LIMITED = Counter(
    "rtc_rate_limited_total", "Requests and frames refused by a rate limit.", ["scope"]
)

# --- messages: the SLIs of the send-success and send-to-deliver SLOs
SENDS = Counter(
    "rtc_message_sends_total",
    "Message sends by transport (rest, ws) and outcome: ok, client_error (4xx: the "
    "sender's mistake, outside the SLO), server_error (5xx: counts against it).",
    ["transport", "outcome"],
)
SEND_TO_DELIVER = Histogram(
    "rtc_send_to_deliver_seconds",
    "From a message's commit to its frame written to a subscriber's WebSocket.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
EVENTS_PUBLISHED = Counter(
    "rtc_events_published_total", "Channel events this node published to the bus."
)
EVENTS_DELIVERED = Counter(
    "rtc_events_delivered_total", "Event frames written to WebSocket connections."
)

# --- WebSocket
WS_CONNECTIONS = Gauge("rtc_ws_connections", "Open WebSocket connections on this node.")
WS_FRAMES = Counter(
    "rtc_ws_frames_total",
    "WebSocket frames by direction (in, out) and type.",
    ["direction", "type"],
)
WS_SLOW_CONSUMERS = Counter(
    "rtc_ws_slow_consumer_closes_total", "Connections closed (1013) for not reading."
)
WS_CLOSES = Counter(
    "rtc_ws_closes_total",
    "Connections the server closed, by reason: queue_frames, queue_bytes (1013, send queue "
    "full), token_expired, session_revoked (4401), bad_frame (4400).",
    ["reason"],
)
WS_REFUSED_FRAMES = Counter(
    "rtc_ws_refused_frames_total",
    "Client frames answered with an error and otherwise ignored, by reason: malformed, "
    "binary, oversize_field (an id too long or not a scalar), expired (token past grace).",
    ["reason"],
)
WS_QUEUED_BYTES = Gauge(
    "rtc_ws_queued_bytes", "Bytes waiting in this node's WebSocket send queues."
)
WS_REAUTHS = Counter(
    "rtc_ws_reauths_total",
    "auth frames on an open WebSocket, by outcome: ok, refused.",
    ["outcome"],
)
# Every reason shows from the start (at 0), so a rate or an alert has a series to read.
for _reason in ("queue_frames", "queue_bytes", "token_expired", "session_revoked", "bad_frame"):
    WS_CLOSES.labels(_reason)
for _reason in ("malformed", "binary", "oversize_field", "expired"):
    WS_REFUSED_FRAMES.labels(_reason)
for _outcome in ("ok", "refused"):
    WS_REAUTHS.labels(_outcome)

# --- bus, outbox, database, storage
OUTBOX_LAG = Gauge(
    "rtc_outbox_lag_seconds", "Age of the oldest event not yet confirmed on the bus (0: none)."
)
OUTBOX_ROWS = Gauge("rtc_outbox_rows", "Events waiting in the outbox.")
BUS_CONSUMER_LAG = Gauge(
    "rtc_bus_consumer_lag_seconds",
    "How far behind the bus this node's reader is: now minus the newest event it read.",
)
BUS_UP = Gauge("rtc_bus_up", "1 when the bus is healthy, 0 while degraded.")
DB_POOL_IN_USE = Gauge("rtc_db_pool_in_use", "Database connections checked out.")
DB_POOL_SIZE = Gauge("rtc_db_pool_size", "Database connections the pool may hold.")
DB_WRITE_QUEUE = Gauge("rtc_db_write_queue", "Write jobs waiting for the writer thread.")
DB_READ_QUEUE = Gauge("rtc_db_read_queue", "Reads waiting for a reader thread.")
FILE_STORAGE_USED = Gauge(
    "rtc_file_storage_used_bytes", "Bytes reserved or used by files, all teams together."
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


LOGIN_FAILURES = Counter(
    "rtc_login_failures_total",
    "Failed sign-ins: invalid_credentials (wrong e-mail or password) or locked (refused "
    "unchecked while the account is locked out).",
    ["reason"],
)
SESSIONS_REVOKED = Counter(
    "rtc_sessions_revoked_total",
    "Logins this node learned were revoked (its own logouts and reuse detections, and "
    "those read from the database).",
)
