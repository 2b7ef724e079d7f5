"""Records the repositories hand back that are not domain objects of their own."""

from __future__ import annotations

from dataclasses import dataclass

from realtimechat.domain.notifications import Recipient


@dataclass(frozen=True, slots=True)
class SendSlot:
    """A send's seq, with what deciding its notifications needs."""

    seq: int
    kind: str
    members: int
    # The other members with their settings, when read with the seq (PostgreSQL).
    recipients: list[Recipient] | None = None


@dataclass(frozen=True, slots=True)
class LoginFailures:
    """An account key's failed sign-ins so far."""

    failures: int = 0
    locked_until: int = 0
    last_failed_at: int = 0


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A stored refresh token (hashed), in its family for reuse detection."""

    id: str
    user_id: str
    token_hash: str
    family_id: str
    created_at: int
    expires_at: int
    used_at: int | None
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class StoredStats:
    """What the database knows that metrics report."""

    jobs: dict[str, dict[str, int]]
    outbox_rows: int
    outbox_lag_ms: int
    storage_used_bytes: int
