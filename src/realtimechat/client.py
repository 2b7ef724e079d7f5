"""The Python client SDK: `from realtimechat.client import ChatClient`.

A thin re-export of `realtimechat.sdk`: the REST client, the live session, the cursor
stores and the one error type.
"""

from __future__ import annotations

from realtimechat.sdk.client import ChatAPIError, ChatClient, ClientOptions, new_client_msg_id
from realtimechat.sdk.cursors import Cursor, CursorStore, FileCursorStore, MemoryCursorStore
from realtimechat.sdk.live import LiveSession, LiveStats

__all__ = [
    "ChatAPIError",
    "ChatClient",
    "ClientOptions",
    "Cursor",
    "CursorStore",
    "FileCursorStore",
    "LiveSession",
    "LiveStats",
    "MemoryCursorStore",
    "new_client_msg_id",
]
