"""The database runner: every unit of work reaches the database thread once.

A job is a plain synchronous function over a SQLAlchemy Connection (storage/uow.py
wraps a service's unit of work in one). It runs whole on a database thread, so a
send costs one hop between the event loop and that thread instead of one per
statement.

On SQLite one writer thread runs the write jobs. Jobs that queue up while a
commit is in progress share the next transaction (group commit); should one
fail, the batch runs again with a SAVEPOINT per job, so one job's failure rolls
back that job alone (PostgreSQL would pay a round trip per SAVEPOINT). Every caller
is answered only after the shared COMMIT returned, so no guarantee is weaker
than one transaction per job. Reads run on a small pool of reader threads with
their own connections (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from realtimechat.domain.errors import AlreadyExists, Conflict, Overloaded, Unavailable
from realtimechat.observability import metrics, tracing
from realtimechat.settings import Settings

T = TypeVar("T")
Work = Callable[[Connection], T]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    on_commit: Callable[[Any], None] | None
    # The caller's context (trace span, log ids), entered while the job runs on the
    # writer thread, so its statements belong to the request that asked for them.
    ctx: contextvars.Context


_STOP = object()


_Result = tuple[asyncio.Future[Any], Any, BaseException | None, Callable[[Any], None] | None]


def _resolve(results: list[_Result]) -> None:
    for fut, value, exc, on_commit in results:
        if exc is None and on_commit is not None:
            # Runs even when the caller was cancelled: a committed change is always
            # published, in commit order.
            try:
                on_commit(value)
            except Exception:
                log.exception("on_commit callback failed")
        if fut.done():  # cancelled, or answered already (a job failed, then its batch)
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


def _sqlite_engine(url: str, synchronous: str, *, writer: bool, pool_size: int) -> Engine:
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=5)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        # Deleted rows (a deleted message's text) are overwritten with zeros, not left
        # in free space inside pages and on the freelist for anyone with the file.
        cur.execute("PRAGMA secure_delete=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def _sqlite_path(url: str) -> str | None:
    """The file of a sqlite:/// URL (None for an in-memory database)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").partition("?")[0]
    return None if not path or path == ":memory:" else path


def private_sqlite_files(url: str) -> None:
    """Create the database file as 0600, and tighten it and its -wal/-shm if they exist.

    SQLite gives the -wal and -shm files the mode of the database file, so creating
    that one 0600 before SQLite opens it covers all three.
    """
    path = _sqlite_path(url)
    if path is None:
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)


def _is_foreign_key_violation(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23503":  # PostgreSQL foreign_key_violation
        return True
    return getattr(orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_FOREIGNKEY"


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return getattr(orig, "sqlite_errorname", None) in (
        "SQLITE_CONSTRAINT_UNIQUE",
        "SQLITE_CONSTRAINT_PRIMARYKEY",
    )


def domain_error(exc: sa.exc.IntegrityError) -> Conflict | None:
    """The domain error for an integrity error a unit of work let escape, if any.

    A foreign-key violation means the request refers to a row that is not there (an
    access token of an account that no longer exists, a channel deleted meanwhile):
    a 409, not a 500. A unique violation is a race another transaction won, which
    the services resolve themselves as `AlreadyExists` (a retried send finds the
    stored message, a register race answers email_taken).
    """
    if _is_foreign_key_violation(exc):
        return Conflict("the request refers to something that does not exist (any more)")
    if _is_unique_violation(exc):
        return AlreadyExists()
    return None


def _postgres_engine(url: str, settings: Settings, *, pool_size: int) -> Engine:
    timeout_ms = int(settings.db.timeout_s * 1000)
    return sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=settings.db.timeout_s,
        pool_pre_ping=True,  # a connection from before a server restart is replaced
        connect_args={
            "connect_timeout": max(1, int(settings.db.timeout_s)),
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        },
    )


class Database:
    """Runs units of work on database threads and hands results back to the loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        url = settings.db_url()
        self.url = url
        if url.startswith("sqlite"):
            private_sqlite_files(url)
            sync = settings.db.sqlite_synchronous
            self._write_engine = _sqlite_engine(url, sync, writer=True, pool_size=1)
            self._read_engine = _sqlite_engine(
                url, sync, writer=False, pool_size=settings.db.read_threads
            )
        elif url.startswith("postgresql+psycopg"):
            # The same runner: one writer thread group-commits on its own connection
            # (row locks order writers across nodes), readers use a bounded pool.
            self._write_engine = _postgres_engine(url, settings, pool_size=1)
            self._read_engine = _postgres_engine(url, settings, pool_size=settings.db.read_threads)
        else:
            raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
        tracing.instrument_engine(self._write_engine)
        tracing.instrument_engine(self._read_engine)
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(
            max_workers=settings.db.read_threads, thread_name_prefix="db-read"
        )
        self.commits = 0
        self.jobs_committed = 0
        self._reads_lock = threading.Lock()
        self._reads_running = 0

    def setup(self, work: Work[T]) -> T:
        """Run `work` in a transaction now, blocking: for start-up, before `start()`."""
        with self._write_engine.connect() as conn, conn.begin():
            return work(conn)

    def start(self) -> None:
        """Start the writer thread."""
        self._writer = threading.Thread(target=self._write_loop, name="db-write", daemon=True)
        self._writer.start()

    async def close(self) -> None:
        """Finish queued writes, then stop the threads and dispose of the engines."""
        # Refuse new writes before the stop marker: a job queued behind it would never run.
        writer, self._writer = self._writer, None
        if writer is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(writer.join)
        await asyncio.to_thread(self._readers.shutdown, wait=True)
        self._write_engine.dispose()
        self._read_engine.dispose()

    @property
    def queue_depth(self) -> int:
        """Write jobs waiting for the writer thread."""
        return self._jobs.qsize()

    def pool_status(self) -> dict[str, int]:
        """How busy the connections are: for /readyz and metrics (M-3)."""
        return {
            "readers": self._settings.db.read_threads,
            "readers_busy": self._reads_running,
            "reads_waiting": self._reads_waiting(),
            "write_queue": self._jobs.qsize(),
            "write_queue_max": self._settings.db.max_queue,
        }

    async def write(self, work: Work[T], on_commit: Callable[[T], None] | None = None) -> T:
        """Run `work` in a write transaction; answer after its commit.

        `on_commit(result)` runs on the event loop right after the commit, in commit
        order, whether or not the caller is still waiting.
        """
        if self._writer is None:
            raise Unavailable(detail="database writer is not running")
        if self._jobs.qsize() >= self._settings.db.max_queue:
            metrics.SHED.labels("db_queue").inc()
            raise Overloaded(self._settings.limits.retry_after_s, "database write queue is full")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, fut, loop, on_commit, contextvars.copy_context()))
        try:
            # Shielded: on a timeout the job still runs and commits; a retried send finds it.
            return await asyncio.wait_for(asyncio.shield(fut), self._settings.db.timeout_s)
        except TimeoutError:
            raise Unavailable(
                self._settings.limits.retry_after_s, "database write timed out"
            ) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # The server went away in the middle of this job's statements (the batch
            # could still roll back): a 503 the client retries, as for a failed batch.
            raise Unavailable(
                self._settings.limits.retry_after_s,
                f"database write failed: {exc.__class__.__name__}",
            ) from exc
        except sa.exc.IntegrityError as exc:
            # The storage boundary: a constraint the client's request broke becomes a
            # domain error here, once, for every unit of work.
            mapped = domain_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def read(self, work: Work[T]) -> T:
        """Run `work` in a read transaction on a reader thread."""
        if self._reads_waiting() >= self._settings.db.max_read_queue:
            metrics.SHED.labels("read_queue").inc()
            raise Overloaded(self._settings.limits.retry_after_s, "database read queue is full")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(
                    self._readers, contextvars.copy_context().run, self._run_read, work
                ),
                self._settings.db.timeout_s,
            )
        except TimeoutError:
            raise Unavailable(
                self._settings.limits.retry_after_s, "database read timed out"
            ) from None
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # The database is down, restarting or dropped the connection: a 503 the client
            # retries, as for a failed write, not a 500 (found by tests/chaos).
            raise Unavailable(
                self._settings.limits.retry_after_s,
                f"database read failed: {exc.__class__.__name__}",
            ) from exc

    def _reads_waiting(self) -> int:
        # The executor's own queue: reads submitted and not yet on a reader thread
        # (including timed-out ones it has yet to skip).
        return self._readers._work_queue.qsize()

    async def ping(self) -> None:
        """A trivial read: the database answers."""
        await self.read(lambda c: c.exec_driver_sql("SELECT 1").scalar())

    def _run_read(self, work: Work[T]) -> T:
        with self._reads_lock:
            self._reads_running += 1
        try:
            with self._read_engine.connect() as conn, conn.begin():
                return work(conn)
        finally:
            with self._reads_lock:
                self._reads_running -= 1

    def _write_loop(self) -> None:
        conn: Connection | None = None
        max_batch = self._settings.db.max_batch
        while True:
            first = self._jobs.get()
            if first is _STOP:
                break
            batch: list[_Job] = [first]
            stop = False
            while len(batch) < max_batch:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            try:
                if conn is None:
                    conn = self._write_engine.connect()
                self._run_batch(conn, batch)
            except Exception as exc:  # the connection itself failed: fail the whole batch
                if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                    # The server is down or restarting: one line per batch, no traceback.
                    log.warning("database write batch failed: %s", exc.__class__.__name__)
                else:
                    log.exception("database write batch failed")
                err = Unavailable(detail=f"database write failed: {exc.__class__.__name__}")
                self._answer(batch, [(j.future, None, err, None) for j in batch])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
            if stop:
                break
        if conn is not None:
            conn.close()

    def _run_batch(self, conn: Connection, batch: list[_Job]) -> None:
        if len(batch) == 1:
            self._run_alone(conn, batch[0])
            return
        # Optimistic first: the jobs one after another with no SAVEPOINT round trips.
        # Should one fail, that transaction is rolled back, the job answered with its
        # error, and the others run again with a SAVEPOINT each (units of work are
        # plain functions of the connection, so running one again is safe).
        failed: tuple[int, Exception] | None = None
        results: list[_Result] = []
        with conn.begin() as tx:
            for i, job in enumerate(batch):
                try:
                    value = job.ctx.run(job.work, conn)
                except Exception as exc:
                    failed = (i, exc)
                    tx.rollback()
                    break
                results.append((job.future, value, None, job.on_commit))
        if failed is None:
            self.commits += 1
            self.jobs_committed += len(batch)
            self._answer(batch, results)
            return
        i, error = failed
        self._answer([batch[i]], [(batch[i].future, None, error, None)])
        self._run_with_savepoints(conn, batch[:i] + batch[i + 1 :])

    def _run_with_savepoints(self, conn: Connection, batch: list[_Job]) -> None:
        results: list[_Result] = []
        with conn.begin():
            # A job whose caller has gone still runs: it may be a send that a retry will look for.
            for job in batch:
                # Plain SAVEPOINT statements: SQLAlchemy's nested-transaction
                # bookkeeping cost more than the statements themselves.
                raw = conn.connection.cursor()
                raw.execute("SAVEPOINT job")
                try:
                    value = job.ctx.run(job.work, conn)
                except Exception as exc:
                    raw.execute("ROLLBACK TO SAVEPOINT job")
                    results.append((job.future, None, exc, None))
                else:
                    results.append((job.future, value, None, job.on_commit))
                raw.execute("RELEASE SAVEPOINT job")
        self.commits += 1
        self.jobs_committed += len(batch)
        self._answer(batch, results)

    def _run_alone(self, conn: Connection, job: _Job) -> None:
        """One job, its own transaction: no SAVEPOINT round trips (on PostgreSQL each
        statement is one, and at low load most batches hold a single job)."""
        tx = conn.begin()
        try:
            value = job.ctx.run(job.work, conn)
        except Exception as exc:
            tx.rollback()
            self._answer([job], [(job.future, None, exc, None)])
            return
        tx.commit()
        self.commits += 1
        self.jobs_committed += 1
        self._answer([job], [(job.future, value, None, job.on_commit)])

    @staticmethod
    def _answer(batch: list[_Job], results: list[_Result]) -> None:
        loop = batch[0].loop
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, results)
