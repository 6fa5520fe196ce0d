"""The hot statements' direct path (``storage/statements.py``) against a real PostgreSQL:
rows come back as ``Session.execute`` gave them, inside the session's transaction, and a
failure reaches the caller as SQLAlchemy's own exception (parameters hidden; a lost
connection invalidated and replaced), so the retries built on those keep working."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import exc, text

from return_notify.storage.statements import Statement
from tests.helpers import uid

pytestmark = pytest.mark.integration

_ROWS = Statement("""
SELECT x AS id, x * 2 AS twice, CAST(:label AS text) AS label, '100%' AS pct,
       CAST(:at AS timestamptz) AS at, CAST('{"a": [1, 2]}' AS jsonb) AS doc
FROM unnest(CAST(:ids AS bigint[])) AS x ORDER BY x
""")


@pytest.fixture
def table(svc: Any) -> Any:
    from return_notify.storage.db import session_scope

    name = uid("stmt_").replace("-", "_")
    with session_scope() as s:
        s.execute(text(f"CREATE TABLE {name} (id int PRIMARY KEY, note text)"))
    yield name
    with session_scope() as s:
        s.execute(text(f"DROP TABLE IF EXISTS {name}"))


def test_rows_come_back_named_and_typed_as_with_session_execute(svc: Any) -> None:
    from return_notify.storage.db import session_scope

    at = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)
    params = {"ids": [3, 1, 2], "label": "it's 50% off", "at": at}
    with session_scope() as s:
        fast = _ROWS.rows(s, params)
        slow = s.execute(_ROWS.clause, params).all()
    assert [tuple(r) for r in fast] == [tuple(r) for r in slow]
    assert [r.id for r in fast] == [1, 2, 3] and fast[0].twice == 2
    assert fast[0].label == "it's 50% off" and fast[0].pct == "100%"
    assert fast[0].at == at and fast[0].doc == {"a": [1, 2]}
    # a column name that is no Python identifier still comes back, by position
    with session_scope() as s:
        (row,) = Statement("SELECT 1 AS \"weird name\", 2 AS class").rows(s, {})
    assert tuple(row) == (1, 2)


def test_it_runs_inside_the_session_transaction(svc: Any, table: str) -> None:
    from return_notify.storage.db import session_scope

    insert = Statement(f"INSERT INTO {table} (id, note) "
                       "SELECT * FROM unnest(CAST(:ids AS int[]), CAST(:notes AS text[]))")
    with pytest.raises(RuntimeError), session_scope() as s:
        insert.run(s, {"ids": [1, 2], "notes": ["a", None]})
        assert s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 2
        raise RuntimeError("roll back")
    with session_scope() as s:
        assert s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        insert.run(s, {"ids": [1], "notes": ["kept"]})
    with session_scope() as s:
        assert s.execute(text(f"SELECT note FROM {table}")).scalar_one() == "kept"


def test_an_error_is_sqlalchemys_with_its_parameters_hidden(svc: Any, table: str) -> None:
    from return_notify.storage.db import session_scope

    insert = Statement(f"INSERT INTO {table} (id, note) VALUES (:id, :note)")
    with session_scope() as s:
        insert.run(s, {"id": 1, "note": "first"})
    with pytest.raises(exc.IntegrityError) as caught, session_scope() as s:
        insert.run(s, {"id": 1, "note": "secret@example.com"})
    assert "secret@example.com" not in str(caught.value)
    assert "duplicate key" in str(caught.value)
    # the session that failed rolled back; the next one works
    with session_scope() as s:
        assert s.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 1


def test_a_lost_connection_is_an_operational_error_and_is_replaced(svc: Any) -> None:
    from return_notify.storage.db import session_scope

    with pytest.raises(exc.OperationalError) as caught, session_scope() as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with session_scope() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        Statement("SELECT 1 AS one").rows(s, {})
    assert caught.value.connection_invalidated
    # the pool hands out a live connection again
    with session_scope() as s:
        assert Statement("SELECT 1 AS one").rows(s, {})[0].one == 1
        assert s.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid


def test_listeners_on_cursor_executions_still_see_the_statement(svc: Any) -> None:
    from sqlalchemy import event

    from return_notify.storage.db import get_engine, session_scope

    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", watch)
    try:
        with session_scope() as s:
            rows = _ROWS.rows(s, {"ids": [7], "label": "x", "at": None})
    finally:
        event.remove(get_engine(), "before_cursor_execute", watch)
    assert rows[0].id == 7 and rows[0].twice == 14
    assert sum("unnest" in st for st in seen) == 1
