"""What an HTTP provider's failure means for a retry: shared by the FCM and SendGrid adapters."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable
from email.utils import parsedate_to_datetime

import httpx

from realtimechat.providers.base import (
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Rejected,
)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (it may be a delay or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def status_error(name: str, response: httpx.Response, reason: str) -> ProviderError:
    """The error for a non-success answer other than the provider's own special cases."""
    message = f"{name} answered {response.status_code}: {reason}"
    if response.status_code == 429:
        return RateLimited(message, retry_after=retry_after(response))
    if response.status_code >= 500:
        return ProviderUnavailable(message, retry_after=retry_after(response))
    return Rejected(message)


async def request(name: str, pending: Awaitable[httpx.Response]) -> httpx.Response:
    """Await an httpx request, turning transport failures into ProviderUnavailable."""
    try:
        return await pending
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(f"{name} timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"{name} unreachable: {type(exc).__name__}: {exc}") from exc
