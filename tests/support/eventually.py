"""`eventually`: poll state that nothing announces (another process's, a counter) until it holds."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    what: str = ...,
    *,
    interval: float = ...,
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T | None],
    timeout: float = ...,
    what: str = ...,
    *,
    interval: float = ...,
) -> T: ...
async def eventually(
    check: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "a condition",
    *,
    interval: float = 0.05,
) -> Any:
    """Call `check` (sync or async) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}: {value!r}")
        # Polling, not sleeping as synchronisation: no event announces this state.
        await asyncio.sleep(interval)
