"""Retention purge and customer erasure on real PostgreSQL: PII gone, KPIs unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.pipeline.retention import purge_expired
from return_notify.reporting.kpis import compute_kpis
from return_notify.storage.db import session_scope
from tests.helpers import event, uid
from tests.integration.cli_helpers import run_ops

pytestmark = pytest.mark.integration


def customer(cid: str, email: str, phone: str | None = None,
             name: str = "Zoë Quintana") -> dict[str, Any]:
    c = {"id": cid, "name": name, "email": email, "locale": "en-US"}
    if phone:
        c["phone"] = phone
    return c


def deliver_all(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ids = dict(ingest_batch(s, events).deliveries)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, get_channel(ch), get_settings())
    return ids


def rows_of(tenant: str) -> str:
    """Every stored row that belongs to the tenant, as one JSON text (to search for PII)."""
    q = {
        "events": "SELECT e.* FROM events e JOIN tenants t ON t.id = e.tenant_id WHERE t.slug = :t",
        "deliveries": "SELECT d.* FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                      "WHERE t.slug = :t",
        "attempts": "SELECT a.* FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id "
                    "JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = :t",
        "sandbox": "SELECT m.* FROM sandbox_messages m JOIN deliveries d ON d.id = m.delivery_id "
                   "JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = :t",
        "inbox": "SELECT i.* FROM inbox_items i JOIN tenants t ON t.id = i.tenant_id WHERE t.slug = :t",
        "returns": "SELECT r.* FROM returns r JOIN tenants t ON t.id = r.tenant_id WHERE t.slug = :t",
        "rejected": "SELECT * FROM rejected_events WHERE tenant = :t",
    }
    with session_scope() as s:
        return json.dumps({k: [dict(r) for r in s.execute(text(v), {"t": tenant}).mappings()]
                           for k, v in q.items()}, default=str, ensure_ascii=False)


def kpi_counts(tenant: str) -> dict[str, Any]:
    with session_scope() as s:
        k = compute_kpis(s, tenant=tenant)
    return {"success": k["success"], "funnel": k["funnel"], "completion": k["completion"],
            "engagement": k["engagement"], "latency": k["latency_s"]}


def test_retention_purge_redacts_old_personal_data_and_keeps_the_kpis(svc: Any) -> None:
    # given: an old return and a recent one, same tenant; a rejected event with PII
    t = uid("t-")
    old_email, new_email = f"{uid('old')}@example.com", f"{uid('new')}@example.com"
    old = [event("label_created", tenant=t,
                 customer=customer("c-old", old_email, "+14155550111", name="Öla Oldtimer")),
           event("label_created", tenant=t, customer=customer("c-old2", "fail-permanent@x.example"))]
    new = [event("label_created", tenant=t, customer=customer("c-new", new_email, "+14155550222"))]
    deliver_all(old)
    deliver_all(new)
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ingest_batch(s, [{**old[0], "event_id": uid("bad-"), "milestone": "teleported"}])
    aged = datetime.now(UTC) - timedelta(days=40)
    with session_scope() as s:
        olds = [e["event_id"] for e in old]
        for sql in (
            "UPDATE events SET received_at = :a WHERE event_id = ANY(:e)",
            "UPDATE deliveries d SET created_at = :a FROM events e WHERE e.id = d.event_pk "
            "AND e.event_id = ANY(:e)",
            "UPDATE delivery_attempts a SET started_at = :a FROM deliveries d, events e WHERE "
            "d.id = a.delivery_id AND e.id = d.event_pk AND e.event_id = ANY(:e)",
            "UPDATE sandbox_messages m SET received_at = :a FROM deliveries d, events e WHERE "
            "d.id = m.delivery_id AND e.id = d.event_pk AND e.event_id = ANY(:e)",
            "UPDATE inbox_items i SET created_at = :a FROM deliveries d, events e WHERE "
            "d.id = i.delivery_id AND e.id = d.event_pk AND e.event_id = ANY(:e)",
            "UPDATE rejected_events SET received_at = :a WHERE tenant = :t",
        ):
            s.execute(text(sql), {"a": aged, "e": olds, "t": t})
    before = kpi_counts(t)
    assert old_email in rows_of(t)
    # when: purged in small batches (several loops per table), each batch reported
    batches: list[tuple[str, int]] = []
    counts = purge_expired(session_scope, 30, batch_size=2,
                           on_progress=lambda table, n: batches.append((table, n)))
    # then: nothing personal of the old return is left; the recent one is untouched
    dump = rows_of(t)
    for pii in (old_email, "+14155550111", "fail-permanent@x.example", "Öla Oldtimer"):
        assert pii not in dump, pii
    assert new_email in dump and "+14155550222" in dump and "Zoë Quintana" in dump
    assert counts["deliveries"] >= 5 and counts["events"] >= 2 and counts["rejected_events"] >= 1
    assert counts["inbox_items"] >= 2 and counts["sandbox_messages"] >= 2
    assert counts["delivery_attempts"] >= 1
    # the progress reports add up to the counts (what `retention`'s progress bar shows)
    assert {t: sum(n for b, n in batches if b == t) for t in counts} == counts
    assert len([b for b, _ in batches if b == "deliveries"]) >= 3
    with session_scope() as s:
        kept = s.execute(text(
            "SELECT e.payload -> 'customer' ->> 'id', d.last_error FROM deliveries d JOIN events e "
            "ON e.id = d.event_pk WHERE e.event_id = :e AND d.channel = 'email'"),
            {"e": old[1]["event_id"]}).one()
    assert kept[0] == "c-old2" and kept[1].startswith("PermanentError")  # class kept
    assert kpi_counts(t) == before
    # and: running it again finds nothing left to do
    assert set(purge_expired(session_scope, 30).values()) == {0}


def test_erase_customer_removes_their_pii_everywhere_and_keeps_counts(svc: Any) -> None:
    # given: two customers of one tenant; one of Ana's notifications is still waiting
    t, ana, bob = uid("t-"), uid("c-ana-"), uid("c-bob-")
    ana_email, bob_email = f"{ana}@example.com", f"{bob}@example.com"
    ana_c = customer(ana, ana_email, "+14155550333", name="Anaïs Erasable")
    deliver_all([event("label_created", tenant=t, customer=ana_c),
                 event("refund_processed", tenant=t, customer=ana_c),
                 event("label_created", tenant=t, customer=customer(bob, bob_email))])
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:  # stored, not yet delivered
        ingest_batch(s, [event("return_approved", tenant=t, customer=ana_c)])
    assert "Anaïs Erasable" in rows_of(t) and ana_email in rows_of(t)
    before = kpi_counts(t)
    # when
    proc = run_ops("customers", "erase", ana, "--tenant", t, "--yes", "--json", env=svc.env())
    # then
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["deliveries_cancelled"] == 2 and result["events"] == 3
    dump = rows_of(t)
    for pii in (ana, ana_email, "+14155550333", "Anaïs Erasable"):
        assert pii not in dump, pii
    assert bob in dump and bob_email in dump  # the other customer is untouched
    after = kpi_counts(t)
    totals = {r["key"]: r["total"] for r in after["success"]["by_channel"]}
    assert totals == {r["key"]: r["total"] for r in before["success"]["by_channel"]}
    assert after["funnel"] == before["funnel"]
    with session_scope() as s:
        waiting = s.execute(text(
            "SELECT count(*) FROM deliveries d JOIN tenants x ON x.id = d.tenant_id WHERE "
            "x.slug = :t AND d.state = 'skipped' AND d.skip_reason = 'erased'"), {"t": t}).scalar()
    assert waiting == 2
    # erasing again is harmless; an unknown tenant is an error
    assert run_ops("customers", "erase", ana, "--tenant", t, "--yes", env=svc.env()).returncode == 0
    assert run_ops("customers", "erase", ana, "--tenant", uid("nope-"), "--yes",
                   env=svc.env()).returncode == 1


def test_the_retention_task_uses_the_configured_days(svc: Any, monkeypatch: Any) -> None:
    from return_notify.config.settings import reset_settings
    from return_notify.tasks.retention import retention

    monkeypatch.setenv("RSN_RETENTION_DAYS", "0")
    reset_settings()
    try:
        assert retention() == {}  # 0: retention off
        monkeypatch.setenv("RSN_RETENTION_DAYS", "3650")
        reset_settings()
        counts = retention()
    finally:
        monkeypatch.undo()
        reset_settings()
    assert set(counts) >= {"deliveries", "events", "inbox_items"}
