"""Identifiers and clock values: time-ordered UUIDv7 ids, UTC milliseconds."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

import uuid_utils


def new_id() -> str:
    """A new time-ordered id (UUIDv7) as text."""
    return str(uuid_utils.uuid7())


def new_epoch() -> str:
    """A random channel epoch: renewed whenever history can no longer continue a cursor."""
    return secrets.token_hex(8)


def now_ms() -> int:
    """Current UTC time in milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an RFC 3339 UTC timestamp."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
