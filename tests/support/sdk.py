"""Client options for tests that drive the SDK against a server on a loopback socket."""

from __future__ import annotations

from realtimechat_client import ClientOptions

# Quick to notice trouble and to come back: tests run on a loopback socket.
FAST = ClientOptions(
    reconnect_base_s=0.02,
    reconnect_cap_s=0.5,
    retry_base_s=0.02,
    retry_cap_s=0.5,
    ws_send_timeout_s=2.0,
    gap_grace_s=0.2,
    tail_check_s=0.5,
)
