"""The SQL unit of work: a service's function of a transaction, run whole on a
database thread by `Database` (one hop, group commit), its events published after
the commit.

Implements services/uow.py's `UnitOfWork` and `Tx` (checked where they are wired,
in bootstrap, and by tests/integration/test_uow.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from realtimechat.domain.models import Event
from realtimechat.storage.channels import SqlChannels
from realtimechat.storage.database import Database
from realtimechat.storage.events import Appended, SqlEvents
from realtimechat.storage.files import SqlFiles
from realtimechat.storage.flags import SqlFlags
from realtimechat.storage.messages import SqlMessages
from realtimechat.storage.notifications import SqlNotifications
from realtimechat.storage.outbox import SqlOutbox
from realtimechat.storage.sessions import SqlSessions
from realtimechat.storage.stats import SqlStats
from realtimechat.storage.teams import SqlInvitations, SqlTeams
from realtimechat.storage.tokens import SqlTokens
from realtimechat.storage.users import SqlUsers

T = TypeVar("T")
R = TypeVar("R")
Publish = Callable[[Sequence[Event]], None]


class _repository(Generic[R]):  # lower case: used as a decorator, like property
    """A repository made on first use and kept in the transaction's __dict__.

    functools.cached_property would do, but takes a lock on every first use, and a
    transaction lives on one thread: this runs on the send path.
    """

    def __init__(self, make: Callable[[SqlTx], R]) -> None:
        self._make = make
        self._name = make.__name__

    def __get__(self, tx: SqlTx, owner: Any = None) -> R:
        value = self._make(tx)
        tx.__dict__[self._name] = value  # later reads find it there, not here
        return value


class SqlTx:
    """One transaction's repositories over its connection, made when first used."""

    def __init__(self, conn: Connection, appended: Appended) -> None:
        self.conn = conn
        self.appended = appended

    @_repository
    def users(self) -> SqlUsers:
        return SqlUsers(self.conn)

    @_repository
    def teams(self) -> SqlTeams:
        return SqlTeams(self.conn)

    @_repository
    def invitations(self) -> SqlInvitations:
        return SqlInvitations(self.conn)

    @_repository
    def channels(self) -> SqlChannels:
        return SqlChannels(self.conn)

    @_repository
    def messages(self) -> SqlMessages:
        return SqlMessages(self.conn, self.appended)

    @_repository
    def events(self) -> SqlEvents:
        return SqlEvents(self.conn, self.appended)

    @_repository
    def outbox(self) -> SqlOutbox:
        return SqlOutbox(self.conn)

    @_repository
    def files(self) -> SqlFiles:
        return SqlFiles(self.conn)

    @_repository
    def notifications(self) -> SqlNotifications:
        return SqlNotifications(self.conn)

    @_repository
    def flags(self) -> SqlFlags:
        return SqlFlags(self.conn)

    @_repository
    def sessions(self) -> SqlSessions:
        return SqlSessions(self.conn)

    @_repository
    def tokens(self) -> SqlTokens:
        return SqlTokens(self.conn)

    @_repository
    def stats(self) -> SqlStats:
        return SqlStats(self.conn)

    def finish(self) -> list[Event]:
        """Write the outbox rows still missing; the events to publish after commit."""
        missing = self.appended.missing_outbox_rows()
        if missing:
            SqlOutbox(self.conn).add(missing)
        return self.appended.events


def _publish_committed(publish: Publish | None) -> Callable[[tuple[object, list[Event]]], None]:
    def on_commit(done: tuple[object, list[Event]]) -> None:
        if done[1] and publish is not None:
            publish(done[1])

    return on_commit


class SqlUnitOfWork:
    """Runs units of work on `Database`; publishes their events with `publish`.

    `outbox`: the bus can lose a publish (a bus across processes), so each event also
    gets an outbox row in its transaction, which the relay covers.
    """

    def __init__(
        self, db: Database, *, publish: Publish | None = None, outbox: bool = False
    ) -> None:
        self.db = db
        self._outbox = outbox
        self._on_commit = _publish_committed(publish)

    async def write(self, work: Callable[[SqlTx], T]) -> T:
        """Run `work` in a write transaction; publish its events after the commit."""
        outbox = self._outbox

        def job(conn: Connection) -> tuple[T, list[Event]]:
            # A new transaction object per run: a batch that runs a job again after
            # another job failed starts it from nothing, its earlier events dropped.
            tx = SqlTx(conn, Appended(outbox=outbox))
            result = work(tx)
            return result, tx.finish()

        result, _events = await self.db.write(job, on_commit=self._on_commit)
        return result

    async def read(self, work: Callable[[SqlTx], T]) -> T:
        """Run `work` in a read transaction on a reader thread."""
        return await self.db.read(
            lambda conn: work(SqlTx(conn, Appended(outbox=False, read_only=True)))
        )

    def setup(self, work: Callable[[SqlTx], T]) -> T:
        """Run `work` now, blocking, before the database is started (start-up, admin)."""
        return self.db.setup(lambda conn: work(SqlTx(conn, Appended(outbox=False, read_only=True))))
