"""The pipeline's hot statements, run on the session's connection with one psycopg2 cursor.

A lone event takes about sixteen statements (ingest, claim, in-app, write-back). Through
``Session.execute(text(...))`` each paid about 100 µs of SQLAlchemy's per-execution work
(cache key, compiled parameters, execution context, result metadata) on top of psycopg2's
own 50 µs: at a steady 50 events/s that was a sixth of the worker's CPU. A ``Statement`` is
compiled once for the dialect and then executed directly on the DBAPI cursor of the
session's own connection, inside the session's transaction; rows come back as named
tuples (``row.channel``), as before.

When listeners watch the connection's cursor executions (tracing instrumentation, a test
counting statements), the statement goes through ``Connection.execute`` as before, so they
see it.

Errors keep SQLAlchemy's shape: a psycopg2 error is raised as the matching
``sqlalchemy.exc.DBAPIError`` subclass (``OperationalError``, ``IntegrityError``...),
with parameters hidden as the engine hides them, and a lost connection is invalidated so
that the pool replaces it, as ``Session.execute`` would.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from sqlalchemy import Connection, exc, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

__all__ = ["Statement"]


class Statement:
    """One SQL text with ``:name`` parameters, as for ``sqlalchemy.text``."""

    __slots__ = ("clause", "_sql", "_row_types")

    def __init__(self, sql: str) -> None:
        self.clause: TextClause = text(sql)
        self._sql: dict[str, str] = {}
        self._row_types: dict[tuple[str, ...], Any] = {}

    def compiled(self, conn: Connection) -> str:
        """The statement in the driver's parameter style (``%(name)s``), compiled once."""
        name = conn.dialect.name
        sql = self._sql.get(name)
        if sql is None:
            sql = self._sql[name] = str(self.clause.compile(dialect=conn.dialect))
        return sql

    def rows(self, session: Session | Connection, params: dict[str, Any]) -> list[Any]:
        """Execute and return every row (named tuples; none for a statement without rows)."""
        conn = session.connection() if isinstance(session, Session) else session
        if conn.dispatch.before_cursor_execute or conn.dispatch.after_cursor_execute:
            # someone watches the statements (tracing, a test counting them): the usual path
            return list(conn.execute(self.clause, params).all())
        sql = self.compiled(conn)
        dbapi_conn = conn.connection.dbapi_connection
        assert dbapi_conn is not None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(sql, params)
            if cursor.description is None:
                return []
            make = self._row_type(tuple(d[0] for d in cursor.description))
            return [make(r) for r in cursor.fetchall()]
        except conn.dialect.loaded_dbapi.Error as err:
            raise _translated(conn, sql, params, err, cursor) from err
        finally:
            cursor.close()

    def run(self, session: Session | Connection, params: dict[str, Any]) -> None:
        """Execute for its effect."""
        self.rows(session, params)

    def _row_type(self, names: tuple[str, ...]) -> Any:
        make = self._row_types.get(names)
        if make is None:
            make = self._row_types[names] = namedtuple("Row", names, rename=True)._make  # type: ignore[misc,attr-defined]
        return make


def _translated(conn: Connection, sql: str, params: dict[str, Any], err: Exception,
                cursor: Any) -> exc.StatementError:
    """``err`` as SQLAlchemy raises it, the connection invalidated if it was lost."""
    dialect = conn.dialect
    dbapi_conn = conn.connection.dbapi_connection
    lost = dialect.is_disconnect(err, dbapi_conn, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(err)
    return exc.DBAPIError.instance(
        sql, params, err, dialect.loaded_dbapi.Error, hide_parameters=True,
        connection_invalidated=lost, dialect=dialect)
