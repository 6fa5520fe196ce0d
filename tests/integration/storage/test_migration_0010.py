"""Migration 0010 on a database filled under the old schema: every row kept, byte for byte,
through upgrade and downgrade; the converted database dedupes and partitions new rows."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from return_notify.storage.db import get_engine, session_scope
from return_notify.storage.migrate import downgrade, upgrade
from return_notify.storage.partitions import Month
from tests.helpers import event

pytestmark = pytest.mark.integration

#: the converted tables and those that point at their rows
TABLES = ("events", "deliveries", "delivery_attempts", "rejected_events", "sandbox_messages",
          "inbox_items")

_FILL = """
INSERT INTO tenants (id, slug) VALUES (1, 'acme'), (2, 'globex');
INSERT INTO returns (id, tenant_id, return_id, milestone, milestone_rank, customer_id, region,
                     product_category)
VALUES (1, 1, 'RMA-1', 'return_approved', 20, 'c1', 'US', 'apparel'),
       (2, 1, 'RMA-2', 'refund_processed', 90, 'c2', 'EU-DE', 'shoes'),
       (3, 2, 'RMA-3', 'return_initiated', 10, 'c3', NULL, NULL);
INSERT INTO events (tenant_id, event_id, return_pk, milestone, occurred_at, received_at,
                    disposition, reason, source, payload)
SELECT 1 + (i % 2), 'ev-' || i, 1 + (i % 3), 'return_initiated',
       timestamptz '2026-01-01 10:00+00' + i * interval '1 hour',
       timestamptz '2026-01-01 10:00+00' + i * interval '1 hour' + interval '2 s',
       'notified', 'first', 'wms',
       jsonb_build_object('event_id', 'ev-' || i, 'customer', jsonb_build_object('id', 'c' || i,
                          'email', 'a' || i || '@example.com'))
FROM generate_series(1, 40) i;
INSERT INTO deliveries (tenant_id, event_pk, return_pk, channel, milestone, recipient, state,
                        attempts, provider, provider_message_id, subject, body, occurred_at,
                        created_at, sent_at, template)
SELECT e.tenant_id, e.id, e.return_pk, ch, e.milestone, 'x@example.com',
       CASE WHEN e.id % 5 = 0 THEN 'dead' ELSE 'sent' END, 1, 'sandbox', 'pm-' || e.id || ch,
       'Subject ' || e.id, 'Body ' || e.id, e.occurred_at, e.received_at,
       e.received_at + interval '1 s', NULL
FROM events e CROSS JOIN (VALUES ('email'), ('sms')) c(ch);
INSERT INTO delivery_attempts (delivery_id, attempt_no, started_at, duration_ms, outcome,
                               provider, provider_message_id, error_class)
SELECT d.id, n, d.created_at, 10.5 * n, CASE WHEN n = 1 THEN 'transient' ELSE 'sent' END,
       'sandbox', d.provider_message_id, CASE WHEN n = 1 THEN 'TransientError' END
FROM deliveries d CROSS JOIN generate_series(1, 2) n;
INSERT INTO rejected_events (tenant, event_id, errors, payload)
VALUES ('acme', 'bad-1', '[{"loc": ["milestone"]}]', '{"milestone": "nope"}'),
       (NULL, NULL, '[{"msg": "not json"}]', '"garbage"');
INSERT INTO sandbox_messages (delivery_id, channel, recipient, body, provider_message_id)
SELECT id, channel, recipient, body, provider_message_id FROM deliveries WHERE id <= 5;
INSERT INTO inbox_items (tenant_id, customer_id, delivery_id, body)
SELECT tenant_id, 'c1', id, 'in-app ' || id FROM deliveries WHERE id <= 3;
"""


def fingerprint(ids_below: int | None = None) -> dict[str, tuple[int, str]]:
    """Per table: row count and an md5 of every row's full text, in primary key order
    (only ids below ``ids_below``: the rows from before the conversion)."""
    out = {}
    with session_scope() as s:
        for t in TABLES:
            where = f"WHERE id < {ids_below}" if ids_below else ""
            out[t] = tuple(s.execute(text(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')) "
                f"FROM {t} x {where}")).one())
    return out


def scalar(sql: str, **params: Any) -> Any:
    with session_scope() as s:
        return s.execute(text(sql), params).scalar_one()


def test_0010_converts_a_filled_database_and_back_without_losing_a_row(empty_db: str) -> None:
    from return_notify.pipeline.ingest import forget_tenants, ingest_batch

    # given: a database at 0009 with history in every table
    upgrade("0009")
    with get_engine().begin() as conn:
        conn.execute(text(_FILL))
        for t in ("tenants", "returns"):
            conn.execute(text(f"SELECT setval('{t}_id_seq', (SELECT max(id) FROM {t}))"))
    before = fingerprint()
    assert before["deliveries"][0] == 80 and before["delivery_attempts"][0] == 160

    # when: upgraded
    assert upgrade("0010") == "0010"

    # then: every row is there, unchanged, in the legacy partitions
    assert fingerprint() == before
    assert scalar("SELECT count(*) FROM ONLY deliveries_legacy") == 80
    assert scalar("SELECT relkind FROM pg_class WHERE relname = 'events'") == "p"
    assert scalar("SELECT count(*) FROM event_keys") == 40
    # the foreign keys of the old rows still hold (a delivery of a missing event is refused)
    with pytest.raises(Exception, match="foreign key"), session_scope() as s:
        s.execute(text("UPDATE deliveries_legacy SET event_pk = 999999 WHERE id = 1"))

    # and: a re-sent old event is a duplicate; a new one goes to this month's partition
    forget_tenants()
    with session_scope() as s:
        dup = ingest_batch(s, [event("return_initiated", tenant="globex", event_id="ev-1")])
        new = ingest_batch(s, [event("return_approved", tenant="acme", return_id="RMA-3",
                                     event_id="ev-new", phone=None)])
    assert (dup.accepted, dup.duplicates) == (0, 1)
    [did] = new.deliveries["email"]
    assert Month.of_id(did) is not None
    assert scalar("SELECT count(*) FROM ONLY deliveries_legacy") == 80

    # when: downgraded again
    assert downgrade("0009") == "0009"

    # then: plain tables, the old rows unchanged and the new ones kept
    assert scalar("SELECT relkind FROM pg_class WHERE relname = 'events'") == "r"
    assert fingerprint(ids_below=10**10) == before
    assert scalar("SELECT count(*) FROM deliveries WHERE id = :d", d=did) == 1
    assert scalar("SELECT count(*) FROM pg_constraint WHERE conname = "
                  "'uq_events_tenant_event'") == 1

    # and: upgrading once more puts the month-carrying ids below the first new month
    assert upgrade("0010") == "0010"
    assert fingerprint(ids_below=10**10) == before
    assert scalar("SELECT count(*) FROM deliveries WHERE id = :d", d=did) == 1
