"""What a notification provider is asked to send, and how it can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class PushMessage:
    """One push to one device."""

    token: str
    platform: str  # android | ios | web
    title: str
    body: str
    # Carried to the device; always holds "job_id", the idempotency key of the send.
    data: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailMessage:
    """One e-mail to one address."""

    to: str
    subject: str
    text: str
    job_id: str  # idempotency key, sent as a SendGrid custom arg


class ProviderError(Exception):
    """A send that did not happen; `retry_after` is the provider's own hint, if any."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """Timeout, refused connection, 5xx, or the breaker or bulkhead refused the call."""


class Refused(ProviderUnavailable):
    """Our own guard did not make the call (breaker open, bulkhead full): no attempt spent."""


class RateLimited(ProviderError):
    """429: the provider is up but wants us to slow down (see retry_after)."""


class Rejected(ProviderError):
    """A permanent refusal (4xx other than 429): retrying sends the same bad request."""

    retryable = False


class TokenUnregistered(Rejected):
    """The push token is no longer valid: the device should be forgotten."""


class PushProvider(Protocol):
    """Sends pushes; returns the provider's message id."""

    name: str

    async def send(self, msg: PushMessage) -> str: ...

    async def close(self) -> None: ...


class EmailProvider(Protocol):
    """Sends e-mails; returns the provider's message id (or "" if it gives none)."""

    name: str

    async def send(self, msg: EmailMessage) -> str: ...

    async def close(self) -> None: ...
