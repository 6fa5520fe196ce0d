"""Migration 0014: a tenant's latest notifications along ``ix_deliveries_tenant_created``, on
every month's partition (those made later too), and gone again on downgrade."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from return_notify.storage.db import get_engine, session_scope
from return_notify.storage.migrate import downgrade, upgrade
from return_notify.storage.partitions import Month, ensure_month, partition_name
from tests.helpers import event

pytestmark = pytest.mark.integration

_INDEXES = """
SELECT c.relname AS part, x.relname AS idx, i.indisvalid
FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
LEFT JOIN LATERAL (SELECT ix.indexrelid, ix.indisvalid FROM pg_index ix
                   JOIN pg_inherits hi ON hi.inhrelid = ix.indexrelid
                   WHERE ix.indrelid = c.oid
                   AND hi.inhparent = 'ix_deliveries_tenant_created'::regclass) i ON true
LEFT JOIN pg_class x ON x.oid = i.indexrelid
WHERE h.inhparent = 'deliveries'::regclass
"""


def _index() -> dict[str, tuple[str | None, bool | None]]:
    with session_scope() as s:
        return {str(r.part): (r.idx, r.indisvalid) for r in s.execute(text(_INDEXES))}


def test_0014_indexes_every_partition_and_the_tenants_latest_use_it(empty_db: str) -> None:
    from return_notify.pipeline.ingest import forget_tenants, ingest_batch

    # given: a database at 0013 with a tenant's notifications
    upgrade("0013")
    forget_tenants()
    with session_scope() as s:
        ingest_batch(s, [event("label_created", tenant="acme") for _ in range(3)])
    # when
    assert upgrade("0014") == "0014"
    # then: each partition has its index, attached to the valid parent
    parts = _index()
    assert parts and all(idx is not None and valid for idx, valid in parts.values()), parts
    with session_scope() as s:
        assert s.execute(text("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                              "'ix_deliveries_tenant_created'::regclass")).scalar_one()
        # and a tenant's latest rows are read along it
        s.execute(text("SET LOCAL enable_seqscan = off"))
        s.execute(text("SET LOCAL enable_bitmapscan = off"))
        plan = "\n".join(r[0] for r in s.execute(text(
            "EXPLAIN SELECT id FROM deliveries WHERE tenant_id = (SELECT id FROM tenants "
            "WHERE slug = 'acme') ORDER BY created_at DESC LIMIT 10")))
    assert "tenant_created" in plan, plan
    # a month's partition made later inherits it
    later = Month.of(datetime.now(UTC) + timedelta(days=400))
    with get_engine().connect() as conn:
        conn.commit()
        ensure_month(conn, later)
    new = _index()[partition_name("deliveries", later)]
    assert new[0] is not None and new[1], new
    # downgrade: gone from every partition
    assert downgrade("0013") == "0013"
    with session_scope() as s:
        left = s.execute(text("SELECT relname FROM pg_class WHERE relkind IN ('i', 'I') "
                              "AND relname LIKE '%tenant_created%'")).scalars().all()
    assert left == []
