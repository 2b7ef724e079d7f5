"""Build the configured push and e-mail providers, each behind its own guard."""

from __future__ import annotations

from dataclasses import dataclass

from realtimechat.providers.base import EmailMessage, EmailProvider, PushMessage, PushProvider
from realtimechat.providers.fcm import FcmPush
from realtimechat.providers.guard import ProviderGuard
from realtimechat.providers.logging import LogEmail, LogPush
from realtimechat.providers.sendgrid import SendGridEmail
from realtimechat.settings import EmailSettings, NotifySettings, PushSettings


class GuardedPush:
    """A PushProvider whose every send goes through a ProviderGuard."""

    def __init__(self, inner: PushProvider, guard: ProviderGuard) -> None:
        self.name = inner.name
        self.inner = inner
        self.guard = guard

    async def send(self, msg: PushMessage) -> str:
        """Send through the guard (breaker, bulkhead, timeout)."""
        return await self.guard.call(lambda: self.inner.send(msg))

    async def close(self) -> None:
        """Close the wrapped provider."""
        await self.inner.close()


class GuardedEmail:
    """An EmailProvider whose every send goes through a ProviderGuard."""

    def __init__(self, inner: EmailProvider, guard: ProviderGuard) -> None:
        self.name = inner.name
        self.inner = inner
        self.guard = guard

    async def send(self, msg: EmailMessage) -> str:
        """Send through the guard (breaker, bulkhead, timeout)."""
        return await self.guard.call(lambda: self.inner.send(msg))

    async def close(self) -> None:
        """Close the wrapped provider."""
        await self.inner.close()


@dataclass
class Providers:
    """The guarded providers a worker sends through; `guards` is keyed "push" and "email"."""

    push: PushProvider
    email: EmailProvider
    guards: dict[str, ProviderGuard]

    def health(self) -> dict[str, dict[str, object]]:
        """Each provider's name with its guard's breaker and bulkhead figures, by kind."""
        names = {"push": self.push.name, "email": self.email.name}
        return {kind: {"provider": names[kind], **g.health()} for kind, g in self.guards.items()}

    async def close(self) -> None:
        """Close both providers (their HTTP connections)."""
        try:
            await self.push.close()
        finally:
            await self.email.close()


def _push(settings: PushSettings) -> PushProvider:
    if settings.provider == "fcm":
        return FcmPush(settings)
    return LogPush()


def _email(settings: EmailSettings) -> EmailProvider:
    if settings.provider == "sendgrid":
        return SendGridEmail(settings)
    return LogEmail()


def build_providers(settings: NotifySettings) -> Providers:
    """The configured providers; ValueError at start-up when one lacks its credentials."""
    # An adapter's client opens no connection before its first send, so one that was
    # built before the other failed its checks holds nothing that needs closing.
    push = _push(settings.push)
    email = _email(settings.email)
    guards = {
        "push": ProviderGuard(f"push:{push.name}", settings.push),
        "email": ProviderGuard(f"email:{email.name}", settings.email),
    }
    return Providers(
        push=GuardedPush(push, guards["push"]),
        email=GuardedEmail(email, guards["email"]),
        guards=guards,
    )
