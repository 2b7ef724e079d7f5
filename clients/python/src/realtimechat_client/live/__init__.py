"""The live session: the WebSocket event stream with reconnect, resume, dedupe and sends."""

from realtimechat_client.live.session import LiveSession
from realtimechat_client.live.stats import LiveStats

__all__ = ["LiveSession", "LiveStats"]
