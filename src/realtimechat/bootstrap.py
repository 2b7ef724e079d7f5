"""Wiring: build every adapter and service from the settings, once."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from realtimechat.blobs.factory import build_store
from realtimechat.bus.base import Bus
from realtimechat.bus.memory import MemoryBus
from realtimechat.resilience.ratelimit import RateLimiter
from realtimechat.services.auth import AuthService
from realtimechat.services.channels import ChannelService
from realtimechat.services.files import FileService
from realtimechat.services.messages import MessageService
from realtimechat.services.notifications import NotificationService
from realtimechat.services.sessions import Revocations
from realtimechat.settings import Settings
from realtimechat.storage import tokens
from realtimechat.storage.database import Database
from realtimechat.storage.uow import SqlUnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Deps:
    """Everything a node runs on."""

    settings: Settings
    db: Database
    uow: SqlUnitOfWork
    bus: Bus
    auth: AuthService
    channels: ChannelService
    messages: MessageService
    notifications: NotificationService
    files: FileService
    limiter: RateLimiter


def signing_secret(settings: Settings, db: Database) -> str:
    """The configured JWT secret, else one generated once and shared.

    Embedded it is kept in data_dir; on a server database it is kept there, so
    every node of a cluster signs and checks tokens with the same key.
    """
    if settings.auth.secret:
        return settings.auth.secret
    candidate = secrets.token_urlsafe(48)
    if not db.url.startswith("sqlite"):
        return db.setup(lambda c: tokens.shared_secret(c, "jwt", candidate))
    path = Path(settings.data_dir) / "secret.key"
    private_dir(path.parent)
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path.read_text().strip()
    # Written 0600 under a temporary name, then linked into place: never readable by
    # others, never seen half-written, and of two processes starting at once one wins.
    tmp = path.with_name(f".secret.key.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(candidate)
        os.link(tmp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return candidate


def private_dir(path: Path) -> None:
    """Make `path` a directory only this user can enter (0700), creating it if need be.

    The data directory holds the database, the signing key and the files: like
    PostgreSQL's data directory it is the node's alone.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # not ours: leave it to its owner
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)


def build_bus(settings: Settings, *, read: bool = True) -> Bus:
    """Redis Streams when RTC_REDIS_URL is set, else the in-process bus.

    `read=False`: for a process that only publishes (the worker).
    """
    if settings.redis_url:
        from realtimechat.bus.redis_streams import RedisStreamsBus

        return RedisStreamsBus(settings.redis_url, settings.redis, read=read)
    return MemoryBus()


def build_files(settings: Settings, db: Database, secret: str) -> FileService:
    """The file service over the configured object store.

    Local-disk links are signed with a key derived from the shared secret, so a
    leaked link key says nothing about the tokens' key.
    """
    files = settings.files
    if files.backend == "local" and files.local_dir is None and not db.url.startswith("sqlite"):
        # A shared database means several processes; each would see only its own files.
        log.warning(
            "files are kept in %s, which only this process sees: with more than one node "
            "or a worker, set RTC_FILES__LOCAL_DIR to a directory they all share, "
            "or RTC_FILES__BACKEND=s3",
            settings.files_dir(),
        )
    if files.backend == "local":
        private_dir(settings.files_dir())
    blob_key = hashlib.sha256(b"rtc-blob-links\0" + secret.encode()).digest()
    # Files append no channel events: a unit of work that publishes nothing will do.
    return FileService(
        uow=SqlUnitOfWork(db), store=build_store(settings, blob_key), settings=settings.files
    )


def build(settings: Settings) -> Deps:
    """Build the node's dependencies (nothing is started here)."""
    private_dir(Path(settings.data_dir))
    bus = build_bus(settings)
    db = Database(settings)
    uow = SqlUnitOfWork(db, publish=bus.publish, outbox=bus.needs_outbox)
    secret = signing_secret(settings, db)
    return Deps(
        settings=settings,
        db=db,
        uow=uow,
        bus=bus,
        auth=AuthService(
            uow=uow,
            settings=settings.auth,
            secret=secret,
            revocations=Revocations(uow=uow, poll_s=settings.auth.revocation_poll_s),
        ),
        channels=ChannelService(uow=uow, limits=settings.limits),
        messages=MessageService(uow=uow, limits=settings.limits, notify=settings.notify),
        notifications=NotificationService(uow=uow),
        files=build_files(settings, db, secret),
        limiter=RateLimiter(
            settings.redis_url, timeout_s=settings.redis.timeout_s, retry_s=settings.redis.retry_s
        ),
    )
