"""Hot-path statements: compiled once per dialect, run straight on the DBAPI cursor.

SQLAlchemy's execution layer costs more per statement than SQLite itself on the
send path (see docs/performance.md). These statements keep their SQL written as
Core constructs, so every dialect gets its own SQL, but skip the per-call
execution context. Only for statements whose columns need no type conversion
(text and integers).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import Compiled

from realtimechat.observability import tracing


class Prepared:
    """One Core statement, compiled on first use for each dialect."""

    def __init__(self, stmt: Executable) -> None:
        self._stmt = stmt
        self._compiled: dict[str, Compiled] = {}

    def _compile(self, conn: Connection) -> Compiled:
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._stmt.compile(dialect=conn.dialect)  # type: ignore[attr-defined]
            self._compiled[conn.dialect.name] = compiled
        return compiled

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run the statement; the DBAPI cursor."""
        compiled = self._compile(conn)
        values = {**compiled.params, **params}
        order = getattr(compiled, "positiontup", None)
        args: Any = tuple(values[name] for name in order) if order else values
        cursor = conn.connection.cursor()
        dbapi_error = conn.dialect.loaded_dbapi.Error
        try:
            if tracing.enabled():
                # These bypass SQLAlchemy's events, so its instrumentation sees nothing.
                with tracing.tracer.start_as_current_span(
                    compiled.string.split(None, 1)[0],
                    attributes={"db.system": conn.dialect.name, "db.statement": compiled.string},
                ):
                    cursor.execute(compiled.string, args)
            else:
                cursor.execute(compiled.string, args)
        except dbapi_error as exc:
            # Raised as SQLAlchemy raises it (IntegrityError, OperationalError, …), so
            # callers handle a duplicate key or a lost server the same on either path.
            raise sa_exc.DBAPIError.instance(
                compiled.string, args, exc, dbapi_error, dialect=conn.dialect
            ) from exc
        return cursor

    def first(self, conn: Connection, params: Mapping[str, Any]) -> SimpleNamespace | None:
        """The first row with attribute access by column name, or None."""
        cursor = self.execute(conn, params)
        row = cursor.fetchone()
        if row is None:
            return None
        names = [d[0] for d in cursor.description]
        return SimpleNamespace(**dict(zip(names, row, strict=True)))

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row."""
        row = self.execute(conn, params).fetchone()
        return None if row is None else row[0]

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[SimpleNamespace]:
        """Every row, with attribute access by column name."""
        cursor = self.execute(conn, params)
        names = [d[0] for d in cursor.description]
        return [SimpleNamespace(**dict(zip(names, row, strict=True))) for row in cursor]
