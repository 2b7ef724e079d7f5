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
ConfirmedHandler = Callable[[Sequence[Event]], None]


class Bus(Protocol):
    """Publishes committed events (in seq order per channel) to every subscriber."""

    # True when a publish can be lost while the node lives on (a bus across
    # processes): events then get an outbox row that the relay covers.
    needs_outbox: bool

    def subscribe(self, on_event: EventHandler, on_ephemeral: EphemeralHandler) -> None:
        """Register the node's handlers; they must not block."""

    def publish(self, events: Sequence[Event]) -> None:
        """Fan out events that are already committed."""

    async def publish_confirmed(self, events: Sequence[Event]) -> None:
        """Publish to every node and return once the bus has the events; raises if it cannot."""

    def on_confirmed(self, handler: ConfirmedHandler) -> None:
        """Call `handler` with events that a `publish` got onto the bus."""

    def publish_ephemeral(self, signal: Ephemeral) -> None:
        """Fan out a signal that is not persisted."""

    def health(self) -> tuple[str, str | None]:
        """("ok" | "degraded" | "down", detail)."""

    async def ping(self) -> None:
        """One round trip to the bus's server (none in process); raises if it fails."""

    async def start(self) -> None:
        """Connect and start reading; must not fail when the bus is unreachable."""

    async def close(self) -> None:
        """Stop reading and publishing."""
