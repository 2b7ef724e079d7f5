"""The knobs of a client and its live sessions: timeouts, retries, reconnects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ClientOptions", "StartFrom"]

StartFrom = Literal["last_seq", "zero"]


@dataclass
class ClientOptions:
    """Timeouts, retry and reconnect policy of a `ChatClient` and its live sessions."""

    # HTTP
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_retries: int = 6  # retries of one REST call (transient failures only)
    retry_base_s: float = 0.05  # backoff: full jitter in [0, min(cap, base * 2**attempt)]
    retry_cap_s: float = 2.0
    max_retry_after_s: float = 10.0  # a longer Retry-After is capped to this
    refresh_margin_s: float = 30.0  # refresh before a WS connect if the token expires sooner
    remember_credentials: bool = True  # re-login if the refresh token was revoked
    # WebSocket (live sessions)
    ws_open_timeout_s: float = 5.0
    reconnect_base_s: float = 0.05
    reconnect_cap_s: float = 5.0
    heartbeat_misses: float = 2.0  # no frame for misses x heartbeat_ms: the connection is dead
    ws_send_timeout_s: float = 5.0  # wait this long for send_ok before sending again
    send_deadline_s: float | None = None  # give up on a send after this (None: session-long)
    gap_grace_s: float = 0.25  # a gap still open after this is backfilled over REST
    tail_check_s: float | None = 15.0  # compare last_seqs (GET /channels) this often
    page_size: int = 500
    max_buffered: int = 10_000  # per-channel reorder buffer; beyond it: resync over REST
    start_from: StartFrom = "last_seq"  # channels without a cursor: from now, or from seq 0
