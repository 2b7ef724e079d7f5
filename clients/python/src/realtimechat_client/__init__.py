"""The RealTimeChat Python client: `from realtimechat_client import ChatClient, LiveSession`.

The names below are imported on first use, so that the server, which imports only
`realtimechat_client.protocol` and `realtimechat_client.backoff`, never loads httpx or
websockets through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtimechat_client.api.messages import new_client_msg_id
    from realtimechat_client.backoff import Backoff
    from realtimechat_client.client import ChatClient
    from realtimechat_client.cursors import (
        Cursor,
        CursorStore,
        FileCursorStore,
        MemoryCursorStore,
    )
    from realtimechat_client.errors import ChatAPIError
    from realtimechat_client.live import LiveSession, LiveStats
    from realtimechat_client.models import Event, Message
    from realtimechat_client.options import ClientOptions

__version__ = "0.1.0"

_EXPORTS = {
    "Backoff": "realtimechat_client.backoff",
    "ChatAPIError": "realtimechat_client.errors",
    "ChatClient": "realtimechat_client.client",
    "ClientOptions": "realtimechat_client.options",
    "Cursor": "realtimechat_client.cursors",
    "CursorStore": "realtimechat_client.cursors",
    "Event": "realtimechat_client.models",
    "FileCursorStore": "realtimechat_client.cursors",
    "LiveSession": "realtimechat_client.live",
    "LiveStats": "realtimechat_client.live",
    "MemoryCursorStore": "realtimechat_client.cursors",
    "Message": "realtimechat_client.models",
    "new_client_msg_id": "realtimechat_client.api.messages",
}

__all__ = [
    "Backoff",
    "ChatAPIError",
    "ChatClient",
    "ClientOptions",
    "Cursor",
    "CursorStore",
    "Event",
    "FileCursorStore",
    "LiveSession",
    "LiveStats",
    "MemoryCursorStore",
    "Message",
    "new_client_msg_id",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'realtimechat_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
