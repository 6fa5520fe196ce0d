"""In a backlog, transactional milestones go ahead of informational ones."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from return_notify.devtools.processes import start_worker
from return_notify.pipeline.ingest import ingest_batch
from return_notify.storage.db import session_scope
from return_notify.workers.app import enqueue_deliveries
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration


def test_refunds_jump_a_backlog_of_eta_updates(svc: Any, tmp_path: Any) -> None:
    # given a backlog: 30 messages of ETA updates queued before 3 of refunds
    tenant = uid("prio-")
    info = [event("in_transit", tenant=tenant, email=None, phone=None) for _ in range(300)]
    urgent = [event("refund_processed", tenant=tenant, email=None, phone=None) for _ in range(30)]
    with session_scope() as s:
        ri = ingest_batch(s, info)
        ru = ingest_batch(s, urgent)
    assert not ri.urgent and len(ru.urgent) == 30
    enqueue_deliveries(dict(ri.deliveries), urgent=ri.urgent, batch_size=10)
    enqueue_deliveries(dict(ru.deliveries), urgent=ru.urgent, batch_size=10)
    # when one worker process drains it
    w = start_worker(svc.env(), concurrency=1, logdir=str(tmp_path), loglevel="WARNING")
    try:
        def order() -> list[str] | None:
            with session_scope() as s:
                rows = s.execute(text(
                    "SELECT d.milestone FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                    "WHERE t.slug = :t AND d.state = 'sent' ORDER BY d.sent_at, d.id"),
                    {"t": tenant}).scalars().all()
            return list(rows) if len(rows) == 330 else None

        sent = wait_until(order, timeout_s=60, what="backlog drained")
    finally:
        w.stop(20)
    # then every refund was sent before most ETA updates (prefetched messages may go first)
    last_refund = max(i for i, m in enumerate(sent) if m == "refund_processed")
    assert last_refund < 30 + 10 * 4 + 10, f"last refund sent at position {last_refund}"
