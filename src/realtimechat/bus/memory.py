"""The in-process bus of the embedded default."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from realtimechat.bus.base import (
    Bus,
    ConfirmedHandler,
    Ephemeral,
    EphemeralHandler,
    EventHandler,
)
from realtimechat.domain.models import Event
from realtimechat.observability import metrics

log = logging.getLogger(__name__)


class MemoryBus:
    """Calls the subscribers synchronously, so per-channel order is the publish order."""

    needs_outbox = False

    def __init__(self) -> None:
        self._subscribers: list[tuple[EventHandler, EphemeralHandler]] = []
        self.published = 0

    def subscribe(self, on_event: EventHandler, on_ephemeral: EphemeralHandler) -> None:
        self._subscribers.append((on_event, on_ephemeral))

    def publish(self, events: Sequence[Event]) -> None:
        for ev in events:
            self.published += 1
            metrics.EVENTS_PUBLISHED.inc()
            for on_event, _ in self._subscribers:
                try:
                    on_event(ev)
                except Exception:  # one bad subscriber must not starve the others
                    log.exception("bus subscriber failed")

    async def publish_confirmed(self, events: Sequence[Event]) -> None:
        self.publish(events)

    def on_confirmed(self, handler: ConfirmedHandler) -> None:
        return None  # nothing to confirm: a publish in one process cannot be lost

    def publish_ephemeral(self, signal: Ephemeral) -> None:
        for _, on_ephemeral in self._subscribers:
            try:
                on_ephemeral(signal)
            except Exception:
                log.exception("bus subscriber failed")

    def health(self) -> tuple[str, str | None]:
        return "ok", None

    async def ping(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


_: type[Bus] = MemoryBus
