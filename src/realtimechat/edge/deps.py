"""What the edge runs on, and each piece of it as a FastAPI dependency.

A route names the services it uses (`channels: Channels`), not the whole node;
the app's state is read in two places, `deps_of` and `_health`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from realtimechat.bus.base import Bus
from realtimechat.observability.health import Health
from realtimechat.resilience.ratelimit import RateLimiter
from realtimechat.services.auth import AuthService
from realtimechat.services.channels import ChannelService
from realtimechat.services.files import FileService
from realtimechat.services.messages import MessageService
from realtimechat.services.notifications import NotificationService
from realtimechat.services.uow import UnitOfWork
from realtimechat.settings import Settings
from realtimechat.storage.database import Database


@dataclass
class Deps:
    """The services and adapters of one node, as the routes and the gateway see them."""

    settings: Settings
    db: Database
    uow: UnitOfWork
    bus: Bus
    auth: AuthService
    channels: ChannelService
    messages: MessageService
    notifications: NotificationService
    files: FileService
    limiter: RateLimiter


def deps_of(request: Request) -> Deps:
    """The node's dependencies, as create_app put them on the app."""
    deps: Deps = request.app.state.deps
    return deps


def _settings(request: Request) -> Settings:
    return deps_of(request).settings


def _uow(request: Request) -> UnitOfWork:
    return deps_of(request).uow


def _db(request: Request) -> Database:
    return deps_of(request).db


def _auth(request: Request) -> AuthService:
    return deps_of(request).auth


def _channels(request: Request) -> ChannelService:
    return deps_of(request).channels


def _notifications(request: Request) -> NotificationService:
    return deps_of(request).notifications


def _files(request: Request) -> FileService:
    return deps_of(request).files


def _limiter(request: Request) -> RateLimiter:
    return deps_of(request).limiter


def _health(request: Request) -> Health:
    health: Health = request.app.state.health
    return health


Config = Annotated[Settings, Depends(_settings)]
Db = Annotated[Database, Depends(_db)]
Uow = Annotated[UnitOfWork, Depends(_uow)]
Auth = Annotated[AuthService, Depends(_auth)]
Channels = Annotated[ChannelService, Depends(_channels)]
Notifications = Annotated[NotificationService, Depends(_notifications)]
Files = Annotated[FileService, Depends(_files)]
Limiter = Annotated[RateLimiter, Depends(_limiter)]
NodeHealth = Annotated[Health, Depends(_health)]
# All of it: for routes/messages.py, until the command pipeline gives it narrow ones.
AppDeps = Annotated[Deps, Depends(deps_of)]
