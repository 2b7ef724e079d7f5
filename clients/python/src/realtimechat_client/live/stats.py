"""What a live session went through, counted (for tests, metrics and curiosity)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LiveStats"]


@dataclass
class LiveStats:
    """Counters of what the session went through (for tests, metrics and curiosity)."""

    connects: int = 0  # connections that reached `ready`
    connect_failures: int = 0  # attempts that never reached `ready`
    disconnects: int = 0
    going_away: int = 0
    slow_consumer_closes: int = 0  # close 1013
    auth_refreshes: int = 0  # close 4401 answered by refreshing the token
    reauths: int = 0  # fresh tokens the server took on an open socket (auth_ok)
    dead_connections: int = 0  # no frame within heartbeat_misses heartbeats
    resyncs: int = 0  # `resync` frames (and buffer overflows) answered by paging
    gap_backfills: int = 0  # holes filled over REST
    pages_fetched: int = 0
    epoch_changes: int = 0
    events_received: int = 0  # event frames and paged events taken in (duplicates included)
    events_delivered: int = 0  # handed to the application (through next_event)
    sends_ws: int = 0  # send frames written
    sends_rest: int = 0  # REST send attempts
    last_going_away_at: float | None = None  # monotonic time of the last going_away
    last_going_away_ms: int | None = None
    ready_at: list[float] = field(default_factory=list)  # monotonic time of each ready
