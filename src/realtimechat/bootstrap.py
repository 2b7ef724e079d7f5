"""The composition root: every adapter and service is built here, once, from the settings.

Three things are built: the API node (`build`), the worker process (`build_worker`)
and what the admin commands run on (`build_admin`). Each starts and stops with one
`running()` context, in one order: what is started later depends on what was
started before, and is stopped first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from realtimechat.blobs.factory import build_store
from realtimechat.bus.base import Bus
from realtimechat.bus.memory import MemoryBus
from realtimechat.edge.catchup import CatchUp
from realtimechat.edge.deps import Deps
from realtimechat.edge.gateway import Gateway
from realtimechat.edge.hub import Hub
from realtimechat.observability import metrics
from realtimechat.observability.health import Health
from realtimechat.providers.factory import build_providers
from realtimechat.resilience.ratelimit import RateLimiter
from realtimechat.services.auth import AuthService
from realtimechat.services.channels import ChannelService
from realtimechat.services.files import FileService
from realtimechat.services.messages import MessageService
from realtimechat.services.notifications import NotificationService
from realtimechat.services.outbox import OutboxAcks
from realtimechat.services.sessions import Revocations
from realtimechat.services.stats import refresh_metrics
from realtimechat.settings import Settings
from realtimechat.storage import tokens
from realtimechat.storage.database import Database
from realtimechat.storage.uow import SqlUnitOfWork
from realtimechat.worker.main import METRICS_REFRESH_S, Worker, every, relay_publish

log = logging.getLogger(__name__)


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


def build_files(settings: Settings, uow: SqlUnitOfWork, secret: str) -> FileService:
    """The file service over the configured object store, on the process's unit of work.

    Local-disk links are signed with a key derived from the shared secret, so a
    leaked link key says nothing about the tokens' key.
    """
    files = settings.files
    if files.backend == "local" and files.local_dir is None and not uow.db.url.startswith("sqlite"):
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
    return FileService(uow=uow, store=build_store(settings, blob_key), settings=settings.files)


@dataclass
class Node:
    """One API node: its services, live delivery, and the work that runs beside them."""

    settings: Settings
    deps: Deps
    hub: Hub
    gateway: Gateway
    health: Health
    catch_up: CatchUp | None  # only where the bus can lose events (scaled out)
    acks: OutboxAcks | None  # likewise
    worker: Worker | None  # the embedded worker, unless RTC_RUN_WORKER=false

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start the node; on the way out drain the gateway, then stop the rest in reverse."""
        deps = self.deps
        async with contextlib.AsyncExitStack() as stack:
            deps.db.start()
            stack.push_async_callback(deps.db.close)
            stack.push_async_callback(deps.files.store.close)
            stack.push_async_callback(deps.limiter.close)
            revocations = deps.auth.revocations
            # Known before the first request; then each new one closes its sockets here.
            await revocations.refresh()
            revocations.on_revoked(self.hub.close_sessions)
            revocations.start()
            stack.push_async_callback(revocations.stop)
            deps.bus.subscribe(self.hub.on_event, self.hub.on_ephemeral)
            if self.acks is not None:
                deps.bus.on_confirmed(self.acks.published)
                self.acks.start()
                stack.push_async_callback(self.acks.stop)
            await deps.bus.start()
            stack.push_async_callback(deps.bus.close)
            await deps.files.ready()
            self.hub.start()
            stack.push_async_callback(self.hub.stop)
            for task in (self.catch_up, self.worker):
                if task is not None:
                    task.start()
                    stack.push_async_callback(task.stop)
            stack.push_async_callback(self.gateway.drain, self.settings.drain_s)
            yield


@dataclass
class WorkerProcess:
    """`realtimechat worker`: the worker over its own database and bus connections."""

    settings: Settings
    db: Database
    uow: SqlUnitOfWork
    bus: Bus
    files: FileService
    worker: Worker

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Start the worker and its metrics refresh; stop them in reverse."""
        async with contextlib.AsyncExitStack() as stack:
            self.db.start()
            stack.push_async_callback(self.db.close)
            stack.push_async_callback(self.files.store.close)
            await self.bus.start()
            # A bus already gone at exit has nothing left to flush: the outbox has it all.
            stack.push_async_callback(_quietly, self.bus.close)
            self.worker.start()
            stack.push_async_callback(self.worker.stop)
            # Keeps the stored figures (jobs, outbox, storage) fresh for scrapes of this port.
            refresher = asyncio.create_task(
                every(
                    METRICS_REFRESH_S,
                    "metrics refresh",
                    lambda: refresh_metrics(self.uow, self.db.pool_status),
                ),
                name="metrics-refresh",
            )
            stack.push_async_callback(_cancel, refresher)
            yield


@dataclass
class Admin:
    """What the admin commands run on: the database and, for those that need it, files."""

    db: Database
    uow: SqlUnitOfWork
    files: FileService | None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The database started, and everything closed afterwards."""
        async with contextlib.AsyncExitStack() as stack:
            self.db.start()
            stack.push_async_callback(self.db.close)
            if self.files is not None:
                stack.push_async_callback(self.files.store.close)
            yield


def build(settings: Settings) -> Node:
    """Build an API node (nothing is started here: see `Node.running`)."""
    private_dir(Path(settings.data_dir))
    bus = build_bus(settings)
    db = Database(settings)
    uow = SqlUnitOfWork(db, publish=bus.publish, outbox=bus.needs_outbox)
    secret = signing_secret(settings, db)
    files = build_files(settings, uow, secret)
    deps = Deps(
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
        files=files,
        limiter=RateLimiter(
            settings.redis_url, timeout_s=settings.redis.timeout_s, retry_s=settings.redis.retry_s
        ),
    )
    redis = settings.redis
    # In one process nothing can come between a commit and its publish; across nodes
    # the bus can lose or reorder what the database has: an outbox, a catch-up from
    # it, and a short hold for events that overtook an earlier one.
    lossy = bus.needs_outbox
    hub = Hub(settings.ws.heartbeat_ms, reorder_ms=redis.reorder_ms if lossy else 0.0)
    metrics.WS_CONNECTIONS.set_function(hub.connection_count)
    metrics.BUS_UP.set_function(lambda: 1.0 if bus.health()[0] == "ok" else 0.0)
    gateway = Gateway(
        hub=hub,
        settings=settings.ws,
        verify=deps.auth.authenticate,
        subscriptions=deps.channels.subscriptions,
        member_channels=deps.channels.member_channels,
        replay=deps.messages.replay,
        publish_ephemeral=bus.publish_ephemeral,
        limiter=deps.limiter,
        frames_per_minute=settings.limits.ws_frames_per_minute,
        services=deps,
    )
    catch_up = (
        CatchUp(
            hub=hub,
            bus_health=bus.health,
            last_seqs=deps.channels.last_seqs,
            joins_since=deps.channels.joins_since,
            fast_s=redis.catchup_fast_s,
            slow_s=redis.catchup_slow_s,
        )
        if lossy
        else None
    )
    # Providers are called only where a worker dispatches: their health is this node's
    # to report only then.
    providers = build_providers(settings.notify) if settings.run_worker else None
    worker = (
        Worker(
            uow=uow, publish=relay_publish(bus), settings=settings, files=files, providers=providers
        )
        if providers is not None
        else None
    )
    return Node(
        settings=settings,
        deps=deps,
        hub=hub,
        gateway=gateway,
        health=Health(
            settings=settings,
            database=db,
            bus=bus,
            limiter=deps.limiter,
            store=files.store,
            providers=providers.health if providers is not None else dict,
            job_counts=deps.notifications.job_counts,
            draining=lambda: gateway.draining,
            refresh_stored=lambda: refresh_metrics(uow, db.pool_status),
        ),
        catch_up=catch_up,
        acks=OutboxAcks(uow=uow) if lossy else None,
        worker=worker,
    )


def build_worker(settings: Settings) -> WorkerProcess:
    """Build the worker process (it only publishes to the bus, never reads it)."""
    db = Database(settings)
    bus = build_bus(settings, read=False)
    uow = SqlUnitOfWork(db, publish=bus.publish, outbox=bus.needs_outbox)
    files = build_files(settings, uow, signing_secret(settings, db))
    worker = Worker(
        uow=uow,
        publish=relay_publish(bus),
        settings=settings,
        files=files,
        providers=build_providers(settings.notify),
    )
    return WorkerProcess(settings=settings, db=db, uow=uow, bus=bus, files=files, worker=worker)


def build_admin(settings: Settings, *, files: bool = False) -> Admin:
    """The database of an existing deployment, and its file service if `files`."""
    db = Database(settings)
    uow = SqlUnitOfWork(db)
    return Admin(
        db=db,
        uow=uow,
        files=build_files(settings, uow, signing_secret(settings, db)) if files else None,
    )


async def _quietly(close: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(Exception):
        await close()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
