"""Lists reach PostgreSQL as one array literal (``storage/pg_arrays.py``): the same values
come back, whatever characters they hold, and the statement carries one literal, not an
``ARRAY[...]`` of quoted elements for the server to parse one by one."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.integration

HOSTILE = ['plain', 'q"uote', "back\\slash", "it's", "{braces}", "a,b", " padded ",
           "", None, "NULL", "東京 🚚", "tab\tnew\nline", "\\\"'", "Ω" * 300]


def _one(sql: str, **params: Any) -> Any:
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        return s.execute(text(sql), params).scalar_one()


def test_text_comes_back_exactly_whatever_it_holds(svc: Any) -> None:
    assert _one("SELECT CAST(:v AS text[])", v=HOSTILE) == HOSTILE
    # the element "NULL" stays a string, None stays NULL
    assert _one("SELECT array_positions(CAST(:v AS text[]), NULL)", v=HOSTILE) == [9]


def test_every_element_type_the_pipeline_binds(svc: Any) -> None:
    at = datetime(2026, 12, 6, 14, 0, 0, 123456, tzinfo=UTC)
    assert _one("SELECT CAST(:v AS timestamptz[])", v=[at, None, at + timedelta(days=40)]) \
        == [at, None, at + timedelta(days=40)]
    assert _one("SELECT CAST(:v AS bigint[])", v=[2026120000000001, -1, None]) \
        == [2026120000000001, -1, None]
    assert _one("SELECT CAST(:v AS boolean[])", v=[True, False, None]) == [True, False, None]
    floats = _one("SELECT CAST(:v AS float8[])", v=[1.5, -0.1, float("nan"), float("inf")])
    assert floats[:2] == [1.5, -0.1] and math.isnan(floats[2]) and floats[3] == math.inf
    assert _one("SELECT CAST(:v AS numeric[])", v=[Decimal("1.50")]) == [Decimal("1.50")]
    assert _one("SELECT CAST(:v AS date[])", v=[date(2026, 2, 28)]) == [date(2026, 2, 28)]
    assert _one("SELECT CAST(:v AS int[])", v=[[1, 2], [3, 4]]) == [[1, 2], [3, 4]]
    assert _one("SELECT CAST(:v AS text[])", v=[]) == []
    # untyped, against a typed value, as `id = ANY(:ids)` uses it
    assert _one("SELECT 3 = ANY(:v)", v=[1, 2, 3]) is True
    assert _one("SELECT now() > ALL(:v)", v=[datetime(2020, 1, 1, tzinfo=UTC)]) is True


def test_enum_members_go_as_their_values(svc: Any) -> None:
    class Kind(str, Enum):  # noqa: UP042 - str() of such a member is "Kind.EMAIL"
        EMAIL = "email"

    class Level(int, Enum):
        HIGH = 3

    assert _one("SELECT CAST(:v AS text[])", v=[Kind.EMAIL]) == ["email"]
    assert _one("SELECT CAST(:v AS int[])", v=[Level.HIGH]) == [3]


def test_the_statement_carries_one_literal(svc: Any) -> None:
    from return_notify.storage.db import get_engine

    ids = list(range(2026120000000000, 2026120000000400))
    raw = get_engine().raw_connection()
    try:
        with raw.cursor() as cur:
            sql = cur.mogrify("SELECT CAST(%s AS bigint[]), CAST(%s AS text[])",
                              (ids, ["a'b", "c"])).decode()
    finally:
        raw.close()
    assert "ARRAY[" not in sql
    assert sql.startswith("SELECT CAST('{2026120000000000,2026120000000001,")
    assert "'{\"a''b\",\"c\"}'" in sql


def test_other_element_types_keep_psycopg2s_adaptation(svc: Any) -> None:
    from return_notify.storage.pg_arrays import array_literal

    with pytest.raises(ValueError, match="bytes"):
        array_literal([b"\x00\x01"])
    got = _one("SELECT CAST(:v AS bytea[])", v=[b"\x00\x01", None])
    assert bytes(got[0]) == b"\x00\x01" and got[1] is None
