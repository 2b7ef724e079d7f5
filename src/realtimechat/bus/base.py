"""The Bus interface. The database is the truth; the bus only fans out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from realtimechat.domain.models import Event


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """A signal that is not persisted and has no seq (typing)."""

    channel_id: str
    user_id: str
    type: str


EventHandler = Callable[[Event], None]
EphemeralHandler = Callable[[Ephemeral], None]


class Bus(Protocol):
    """Publishes committed events (in seq order per channel) to every subscriber."""

    def subscribe(self, on_event: EventHandler, on_ephemeral: EphemeralHandler) -> None:
        """Register the node's handlers; they must not block."""

    def publish(self, events: Sequence[Event]) -> None:
        """Fan out events that are already committed."""

    def publish_ephemeral(self, signal: Ephemeral) -> None:
        """Fan out a signal that is not persisted."""

    def health(self) -> tuple[str, str | None]:
        """("ok" | "degraded" | "fail", detail)."""

    async def start(self) -> None:
        """Connect and start reading; must not fail when the bus is unreachable."""

    async def close(self) -> None:
        """Stop reading and publishing."""
