"""Wiring: build every adapter and service from the settings, once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from realtimechat.bus.base import Bus
from realtimechat.bus.memory import MemoryBus
from realtimechat.resilience.ratelimit import RateLimiter
from realtimechat.services.auth import AuthService
from realtimechat.services.channels import ChannelService
from realtimechat.services.messages import MessageService
from realtimechat.settings import Settings
from realtimechat.storage.database import Database


@dataclass
class Deps:
    """Everything a node runs on."""

    settings: Settings
    db: Database
    bus: Bus
    auth: AuthService
    channels: ChannelService
    messages: MessageService
    limiter: RateLimiter


def signing_secret(settings: Settings) -> str:
    """The configured JWT secret, else one generated once and kept in data_dir."""
    if settings.auth.secret:
        return settings.auth.secret
    path = Path(settings.data_dir) / "secret.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def build(settings: Settings) -> Deps:
    """Build the node's dependencies (nothing is started here)."""
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    db = Database(settings)
    bus = MemoryBus()
    return Deps(
        settings=settings,
        db=db,
        bus=bus,
        auth=AuthService(db=db, settings=settings.auth, secret=signing_secret(settings)),
        channels=ChannelService(db=db, bus=bus),
        messages=MessageService(db=db, bus=bus, limits=settings.limits),
        limiter=RateLimiter(
            settings.redis_url, timeout_s=settings.redis.timeout_s, retry_s=settings.redis.retry_s
        ),
    )
