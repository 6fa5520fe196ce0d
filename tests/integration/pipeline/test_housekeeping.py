"""The bookkeeping tables outside the monthly partitions are bounded: the daily history
maintenance deletes in-app items with their month and webhook ids after a week; the
retention purge deletes the sandbox provider's copies. Real PostgreSQL, fixed times (a
"today" in 2040), nothing depends on today's date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from return_notify.pipeline.housekeeping import expire_rows
from return_notify.pipeline.retention import purge_expired
from return_notify.storage.db import get_engine, session_scope

pytestmark = pytest.mark.integration

NOW = datetime(2040, 6, 15, 12, tzinfo=UTC)  # with 12 months kept: from 2039-06-01 on


def count(table: str, marker: str) -> int:
    col = {"inbox_items": "return_id", "webhook_events": "provider_event_id",
           "sandbox_messages": "provider_message_id"}[table]
    with session_scope() as s:
        return int(s.execute(text(f"SELECT count(*) FROM {table} WHERE {col} LIKE :m"),
                             {"m": f"{marker}%"}).scalar_one())


def add_rows(times: dict[str, datetime]) -> None:
    """One in-app item, webhook id and sandbox copy made at each time, named by its key."""
    with session_scope() as s:
        tid = s.execute(text("INSERT INTO tenants (slug) VALUES ('hk') ON CONFLICT (slug) "
                             "DO UPDATE SET slug = EXCLUDED.slug RETURNING id")).scalar_one()
        for name, at in times.items():
            s.execute(text("INSERT INTO inbox_items (tenant_id, customer_id, body, return_id, "
                           "created_at) VALUES (:t, 'c', 'hi', :n, :at)"),
                      {"t": tid, "n": name, "at": at})
            s.execute(text("INSERT INTO webhook_events (provider, provider_event_id, "
                           "received_at) VALUES ('sendgrid', :n, :at)"), {"n": name, "at": at})
            s.execute(text("INSERT INTO sandbox_messages (delivery_id, channel, recipient, body, "
                           "provider_message_id, received_at) VALUES (1, 'email', "
                           "'a@example.com', 'hi', :n, :at)"), {"n": name, "at": at})


def test_old_bookkeeping_rows_go_and_recent_ones_stay(scratch_db: str) -> None:
    # given: rows on either side of each table's limit (several batches of the old ones)
    add_rows({f"old-{i}": datetime(2039, 5, 31, 23, 59, tzinfo=UTC) - timedelta(days=i)
              for i in range(5)})
    add_rows({"month-kept": datetime(2039, 6, 1, tzinfo=UTC),  # oldest kept month
              "week-old": NOW - timedelta(days=8), "days-old": NOW - timedelta(days=6),
              "today": NOW})
    # when
    with get_engine().connect() as conn:
        deleted = expire_rows(conn, history_months=12, now=NOW, batch_size=2)
    purged = purge_expired(session_scope, 30, now=NOW, batch_size=2)
    # then: in-app items leave with their month, webhook ids after 7 days, sandbox copies
    # after RSN_RETENTION_DAYS
    assert deleted == {"inbox_items": 5, "webhook_events": 7}
    assert count("inbox_items", "old-") == 0
    assert {n: count("inbox_items", n) for n in ("month-kept", "week-old", "today")} == \
        {"month-kept": 1, "week-old": 1, "today": 1}
    assert count("webhook_events", "old-") == count("webhook_events", "week-old") == 0
    assert count("webhook_events", "days-old") == count("webhook_events", "today") == 1
    assert purged["sandbox_messages"] == 6  # older than 30 days: old-* and month-kept
    assert count("sandbox_messages", "week-old") == count("sandbox_messages", "today") == 1
    # and: a second run finds nothing; RSN_HISTORY_MONTHS=0 keeps every in-app item
    with get_engine().connect() as conn:
        assert expire_rows(conn, history_months=12, now=NOW) == \
            {"inbox_items": 0, "webhook_events": 0}
        assert expire_rows(conn, history_months=0, now=NOW + timedelta(days=400)) == \
            {"webhook_events": 2}
    assert count("inbox_items", "") == 4
