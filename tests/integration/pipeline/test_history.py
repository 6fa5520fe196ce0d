"""Monthly history on real PostgreSQL: partitions ahead, idempotency across months, whole
months dropped or archived after RSN_HISTORY_MONTHS, the default partition drained.

Every test runs in a scratch database of its own and places rows in fixed months of
2039-2041 (ids carry their month), so nothing depends on today's date.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.pipeline.history import maintain_partitions, prune, run_maintenance
from return_notify.storage.db import get_engine, session_scope
from return_notify.storage.partitions import Month, list_partitions, partition_name
from tests.helpers import event, uid

pytestmark = pytest.mark.integration

NOW = datetime(2040, 6, 15, 12, tzinfo=UTC)  # "today" for prune: keeps 2039-06 .. 2040-06


def at(year: int, month: int, day: int = 10) -> datetime:
    return datetime(year, month, day, 9, 30, tzinfo=UTC)


def store_history(tenant: str, when: datetime, milestone: str = "refund_processed",
                  event_id: str | None = None) -> dict[str, Any]:
    """One return with an event, an email delivery, its attempt and a rejected event, all
    made at ``when`` (its month's partitions must exist)."""
    event_id = event_id or uid("ev-")
    with session_scope() as s:
        tid = s.execute(text(
            "INSERT INTO tenants (slug) VALUES (:t) ON CONFLICT (slug) DO UPDATE "
            "SET slug = EXCLUDED.slug RETURNING id"), {"t": tenant}).scalar_one()
        rpk = s.execute(text(
            "INSERT INTO returns (tenant_id, return_id, milestone, milestone_rank, milestone_at, "
            "customer_id) VALUES (:t, :r, :m, 90, :at, 'cust-1') RETURNING id"),
            {"t": tid, "r": uid("RMA-"), "m": milestone, "at": when}).scalar_one()
        epk = s.execute(text(
            "INSERT INTO events (id, tenant_id, event_id, return_pk, milestone, occurred_at, "
            "received_at, disposition, payload) VALUES (rsn_month_id(nextval('events_id_seq'), "
            ":at), :t, :e, :r, :m, :at, :at, 'notified', '{}') RETURNING id"),
            {"t": tid, "e": event_id, "r": rpk, "m": milestone, "at": when}).scalar_one()
        s.execute(text("INSERT INTO event_keys VALUES (:t, :e)"), {"t": tid, "e": event_id})
        did = s.execute(text(
            "INSERT INTO deliveries (id, tenant_id, event_pk, return_pk, channel, milestone, "
            "state, occurred_at, created_at, sent_at) VALUES (rsn_id_like(nextval("
            "'deliveries_id_seq'), :e), :t, :e, :r, 'email', :m, 'sent', :at, :at, :at) "
            "RETURNING id"), {"t": tid, "e": epk, "r": rpk, "m": milestone, "at": when}
        ).scalar_one()
        s.execute(text(
            "INSERT INTO delivery_attempts (delivery_id, attempt_no, started_at, duration_ms, "
            "outcome) VALUES (:d, 1, :at, 12.5, 'sent')"), {"d": did, "at": when})
        s.execute(text(
            "INSERT INTO rejected_events (id, received_at, tenant, event_id, errors, payload) "
            "VALUES (rsn_month_id(nextval('rejected_events_id_seq'), :at), :at, :t, 'bad', "
            "'[]', '{}')"), {"t": tenant, "at": when})
    return {"tenant_id": tid, "return_pk": rpk, "event_pk": epk, "delivery_id": did,
            "event_id": event_id}


def count(sql: str, **params: Any) -> int:
    with session_scope() as s:
        return int(s.execute(text(sql), params).scalar_one())


def partitions() -> dict[str, bool]:
    with get_engine().connect() as conn:
        return {p.name: p.attached for p in list_partitions(conn)}


def test_partitions_are_made_ahead_and_rows_carry_their_month(scratch_db: str) -> None:
    # given / when: the maintenance task runs in May 2039 with three months ahead
    with get_engine().connect() as conn:
        created = maintain_partitions(conn, 3, now=at(2039, 5))
        again = maintain_partitions(conn, 3, now=at(2039, 5))
    # then: May to August of every history table, once
    assert sorted(created) == sorted(partition_name(t, Month(2039, m)) for m in (5, 6, 7, 8)
                                     for t in ("events", "deliveries", "delivery_attempts",
                                               "rejected_events"))
    assert again == []
    row = store_history(uid("t-"), at(2039, 6))
    assert Month.of_id(row["event_pk"]) == Month.of_id(row["delivery_id"]) == Month(2039, 6)
    assert count("SELECT count(*) FROM deliveries_p203906") == 1
    assert count("SELECT count(*) FROM delivery_attempts_p203906") == 1


def test_a_duplicate_event_id_is_a_no_op_whatever_month_the_original_is_in(
        scratch_db: str) -> None:
    from return_notify.pipeline.ingest import ingest_batch

    with get_engine().connect() as conn:
        maintain_partitions(conn, 0, now=at(2039, 3))
    tenant = uid("t-")
    old = store_history(tenant, at(2039, 3), milestone="return_approved")
    # when: the same event id arrives again now (another month's partition)
    with session_scope() as s:
        result = ingest_batch(s, [event("return_approved", tenant=tenant,
                                        event_id=old["event_id"])])
    # then: recognised as a duplicate, nothing stored
    assert (result.accepted, result.duplicates) == (0, 1)
    assert count("SELECT count(*) FROM events WHERE event_id = :e", e=old["event_id"]) == 1


def test_months_older_than_history_months_are_dropped_whole(scratch_db: str) -> None:
    from return_notify.pipeline.ingest import ingest_batch

    with get_engine().connect() as conn:
        maintain_partitions(conn, 15, now=at(2039, 3))
    tenant = uid("t-")
    gone = store_history(tenant, at(2039, 3))
    kept = store_history(tenant, at(2039, 6))
    # when: RSN_HISTORY_MONTHS=12 on 2040-06-15 (keeps June 2039 .. June 2040)
    with get_engine().connect() as conn:
        result = prune(conn, 12, now=NOW)
    # then: March 2039 is gone, every table's partition and its event keys with it
    found = partitions()
    for t in ("events", "deliveries", "delivery_attempts", "rejected_events"):
        assert partition_name(t, Month(2039, 3)) not in found
        assert found[partition_name(t, Month(2039, 6))]
    assert partition_name("delivery_attempts", Month(2039, 3)) in result.dropped
    assert result.event_keys_deleted >= 1
    assert count("SELECT count(*) FROM event_keys WHERE event_id = :e", e=gone["event_id"]) == 0
    assert count("SELECT count(*) FROM deliveries WHERE id = :d", d=kept["delivery_id"]) == 1
    assert count("SELECT count(*) FROM delivery_attempts WHERE delivery_id = :d",
                 d=kept["delivery_id"]) == 1
    # and: the dropped event's id re-sent later is a new event, but the return (kept) is
    # past that milestone: recorded as stale, never notified again
    with session_scope() as s:
        again = ingest_batch(s, [event("label_created", tenant=tenant, event_id=gone["event_id"],
                                       return_id=_return_ref(gone["return_pk"]))])
    assert again.accepted == 1 and not again.deliveries
    assert dict(again.by_disposition) == {"stale": 1}
    # a second run finds nothing more to drop
    with get_engine().connect() as conn:
        assert prune(conn, 12, now=NOW).dropped == []


def _return_ref(return_pk: int) -> str:
    with session_scope() as s:
        return str(s.execute(text("SELECT return_id FROM returns WHERE id = :r"),
                             {"r": return_pk}).scalar_one())


def test_an_archived_month_is_exported_before_it_is_dropped(scratch_db: str,
                                                            tmp_path: Path) -> None:
    with get_engine().connect() as conn:
        maintain_partitions(conn, 0, now=at(2039, 2))
    row = store_history(uid("t-"), at(2039, 2))
    # when
    with get_engine().connect() as conn:
        result = prune(conn, 12, archive_dir=str(tmp_path), now=NOW, revision="0010")
    # then: the month's directory has one gzip CSV per table and a manifest that counts them
    assert "2039-02" in result.archived
    month_dir = tmp_path / "2039-02"
    manifest = json.loads((month_dir / "manifest.json").read_text())
    files = {f["table"]: f for f in manifest["files"]}
    assert {t: files[t]["rows"] for t in files} == {
        "events": 1, "deliveries": 1, "delivery_attempts": 1, "rejected_events": 1}
    with gzip.open(month_dir / "deliveries.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    assert [int(r["id"]) for r in rows] == [row["delivery_id"]]
    assert [c["name"] for c in files["deliveries"]["columns"]][:2] == ["id", "tenant_id"]
    assert partition_name("deliveries", Month(2039, 2)) not in partitions()


def test_rows_of_a_month_without_partition_wait_in_the_default_one(scratch_db: str) -> None:
    # given: a row made in January 2041, for which no partition exists yet
    with session_scope() as s:
        s.execute(text(
            "INSERT INTO rejected_events (id, received_at, tenant, errors, payload) VALUES "
            "(rsn_month_id(nextval('rejected_events_id_seq'), :at), :at, 'x', '[]', '{}')"),
            {"at": at(2041, 1)})
    assert count("SELECT count(*) FROM rejected_events_default") == 1
    # when: the maintenance task makes January's partitions
    with get_engine().connect() as conn:
        maintain_partitions(conn, 0, now=at(2041, 1))
    # then: the row moved into its month, the default partition is empty again
    assert count("SELECT count(*) FROM rejected_events_default") == 0
    assert count("SELECT count(*) FROM rejected_events_p204101") == 1


def test_a_lookup_by_delivery_id_reads_one_partition(scratch_db: str) -> None:
    with get_engine().connect() as conn:
        maintain_partitions(conn, 2, now=at(2039, 1))
    rows = [store_history(uid("t-"), at(2039, m)) for m in (1, 2, 3)]
    with session_scope() as s:
        plan = "\n".join(r[0] for r in s.execute(text(
            "EXPLAIN SELECT id, state FROM deliveries WHERE id = ANY(CAST(:ids AS bigint[]))"),
            {"ids": [rows[1]["delivery_id"]]}))
    scanned = {p for p in partitions() if p.startswith("deliveries_") and p in plan}
    assert scanned == {"deliveries_p203902"}


def test_the_maintenance_run_makes_months_ahead_then_drops_old_ones(scratch_db: str) -> None:
    with get_engine().connect() as conn:
        maintain_partitions(conn, 0, now=at(2039, 1))
        # when: the daily run on 2040-06-15, two months ahead, twelve kept
        out = run_maintenance(conn, 12, 2, now=NOW)
    # then: June to August 2040 made; January 2039 (and the months of the migration,
    # long before 2040) dropped, children first
    assert {n for n in out["created"] if n.startswith("events_")} == {
        "events_p204006", "events_p204007", "events_p204008"}
    jan = [n for n in out["dropped"] if n.endswith("_p203901")]
    assert jan == ["rejected_events_p203901", "delivery_attempts_p203901",
                   "deliveries_p203901", "events_p203901"]
    assert out["archived"] == []
