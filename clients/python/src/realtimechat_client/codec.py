"""JSON in and out, with the standard library: the client needs no compiled JSON package."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DecodeError", "dumps", "loads"]

DecodeError = json.JSONDecodeError
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_decode = json.JSONDecoder().decode


def dumps(value: Any) -> str:
    """Compact JSON text (what a WebSocket text frame carries)."""
    return _encode(value)


def loads(raw: str | bytes | bytearray) -> Any:
    """The value of a JSON text; DecodeError if it is not one (also for bad UTF-8)."""
    if not isinstance(raw, str):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"not UTF-8: {exc}", "", 0) from exc
    return _decode(raw)
