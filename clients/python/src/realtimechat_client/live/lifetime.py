"""The end of a live session, which each of its parts watches, and waiting on several things."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from realtimechat_client.errors import session_closed

__all__ = ["Lifetime", "retrieve", "wait_any"]


class Lifetime:
    """Whether the session was closed, or failed (and why); `ended` is set by either."""

    __slots__ = ("closed", "ended", "failure")

    def __init__(self) -> None:
        self.closed = False  # aclose() was called
        self.failure: BaseException | None = None  # what ended the session, if not aclose
        self.ended = asyncio.Event()

    def close(self) -> None:
        """The application closed the session."""
        self.closed = True
        self.ended.set()

    def fail(self, exc: BaseException) -> None:
        """The session cannot go on (the first reason is kept)."""
        if self.failure is None:
            self.failure = exc
        self.ended.set()

    def raise_if_failed(self) -> None:
        """Raise what ended the session, if something did."""
        if self.failure is not None:
            raise self.failure

    def raise_if_over(self, detail: str = "the live session is closed") -> None:
        """Raise what ended the session, or `session_closed` once it was closed."""
        self.raise_if_failed()
        if self.closed:
            raise session_closed(detail)


def retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a background task's outcome as seen (its awaiter may have gone)."""
    if not task.cancelled():
        task.exception()


async def wait_any(*aws: Awaitable[Any], limit_s: float | None) -> None:
    """Wait until the first of `aws` completes or `limit_s` passes.

    Futures passed in are only watched, never cancelled; coroutines are run as tasks and
    cancelled when this returns.
    """
    owned: list[asyncio.Future[Any]] = []
    watched: set[asyncio.Future[Any]] = set()
    for aw in aws:
        if isinstance(aw, asyncio.Future):
            watched.add(aw)
        else:
            task: asyncio.Future[Any] = asyncio.ensure_future(aw)
            owned.append(task)
            watched.add(task)
    try:
        await asyncio.wait(watched, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in owned:
            fut.cancel()
