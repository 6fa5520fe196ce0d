"""The pipeline's functions on real PostgreSQL: lifecycle, dedupe, claim, retry, dead, replay."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import IngestResult, ingest_batch
from return_notify.pipeline.maintenance import dlq_list, dlq_replay, due_deliveries
from return_notify.storage.db import get_engine, session_scope
from tests.helpers import event, later, uid

pytestmark = pytest.mark.integration


def ingest(events: list[Any]) -> IngestResult:
    with session_scope() as s:
        return ingest_batch(s, events)


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def deliver(result: IngestResult, settings: Settings | None = None) -> None:
    settings = settings or Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    for ch, ids in result.deliveries.items():
        deliver_batch(session_scope, ch, ids, SandboxChannel(ch, engine=get_engine()), settings)


@pytest.fixture
def tenant(svc: Any) -> str:
    return uid("t-")


def states(return_id: str) -> dict[tuple[str, str], str]:
    rows = q("SELECT d.milestone, d.channel, d.state FROM deliveries d JOIN returns r "
             "ON r.id = d.return_pk WHERE r.return_id = :r", r=return_id)
    return {(m, c): s for m, c, s in rows}


@pytest.mark.parametrize("milestone", [
    "return_initiated", "return_approved", "label_created", "shipment_dispatched", "in_transit",
    "warehouse_received", "inspection_completed", "restocked", "refund_processed",
    "return_completed", "return_rejected", "return_cancelled", "exception",
])
def test_every_milestone_is_rendered_and_sent_on_its_channels(tenant: str, milestone: str) -> None:
    # given a return whose first event is this milestone
    ev = event(milestone, tenant=tenant, data={"refund_amount": "12.50", "currency": "USD",
                                               "label_url": "https://l.example/x.pdf"})
    # when it is ingested and delivered
    result = ingest([ev])
    deliver(result)
    # then every channel of the default rule got the message, with the return reference
    from return_notify.config.rules import DEFAULT_RULES
    from return_notify.events import Milestone

    expected = set(DEFAULT_RULES[Milestone(milestone)].channels)
    got = states(ev["return_id"])
    assert {c for (_, c) in got} == expected
    assert set(got.values()) == {"sent"}
    bodies = q("SELECT s.channel, s.body, s.subject, s.html FROM sandbox_messages s JOIN deliveries d "
               "ON d.id = s.delivery_id JOIN returns r ON r.id = d.return_pk "
               "WHERE r.return_id = :r", r=ev["return_id"])
    assert len(bodies) == len(expected)
    for channel, body, subject, html in bodies:
        assert ev["return_id"] in body
        if channel == "email":
            assert subject and html and "<html" in html.lower()


def test_duplicate_event_id_is_a_no_op(tenant: str) -> None:
    ev = event("label_created", tenant=tenant)
    first = ingest([ev, dict(ev)])
    second = ingest([ev])
    assert first.accepted == 1 and first.duplicates == 1
    assert second.accepted == 0 and second.duplicates == 1
    assert sum(len(v) for v in second.deliveries.values()) == 0
    assert q("SELECT count(*) FROM events WHERE event_id = :e", e=ev["event_id"])[0][0] == 1


def test_older_milestone_after_newer_is_recorded_but_never_notified(tenant: str) -> None:
    rid = uid("RMA-")
    refund = event("refund_processed", tenant=tenant, return_id=rid, at=later(0))
    transit = event("in_transit", tenant=tenant, return_id=rid, at=later(-3600))
    ingest([refund])
    result = ingest([transit])
    assert result.by_disposition == {"stale": 1}
    assert not result.deliveries
    disp = q("SELECT milestone, disposition FROM events WHERE event_id = :e",
             e=transit["event_id"])
    assert disp == [("in_transit", "stale")]
    assert q("SELECT milestone FROM returns WHERE return_id = :r", r=rid) == [("refund_processed",)]


def test_eta_updates_notify_but_an_older_one_does_not(tenant: str) -> None:
    rid = uid("RMA-")
    a = event("in_transit", tenant=tenant, return_id=rid, at=later(0))
    b = event("in_transit", tenant=tenant, return_id=rid, at=later(10))
    old = event("in_transit", tenant=tenant, return_id=rid, at=later(5))
    r = ingest([a, b, old])
    assert dict(r.by_disposition) == {"notified": 2, "stale": 1}


def test_invalid_events_are_kept_with_reasons_and_the_rest_goes_in(tenant: str) -> None:
    good = event(tenant=tenant)
    unknown = event(tenant=tenant, shipment_weight="2kg")
    bad_phone = event(tenant=tenant, phone="555-0100")
    r = ingest([unknown, good, "not json at all {", 42, bad_phone])
    assert r.accepted == 1 and r.rejected == 4
    rows = q("SELECT event_id, errors FROM rejected_events WHERE tenant = :t ORDER BY id", t=tenant)
    fields = {row[0]: [e["field"] for e in row[1]] for row in rows}
    assert fields[unknown["event_id"]] == ["shipment_weight"]
    assert fields[bad_phone["event_id"]] == ["customer.phone"]


def test_transient_failures_are_retried_then_sent(tenant: str) -> None:
    ev = event("refund_processed", tenant=tenant, email="fail-transient-2@example.com", phone=None)
    r = ingest([ev])
    settings = Settings(max_attempts=5, backoff_base_s=0.01, backoff_max_s=0.02)
    for _ in range(3):
        with session_scope() as s:
            s.execute(text("UPDATE deliveries SET next_attempt_at = now() WHERE state = 'retrying'"))
        deliver(r, settings)
    rows = q("SELECT a.attempt_no, a.outcome, a.error_class FROM delivery_attempts a "
             "JOIN deliveries d ON d.id = a.delivery_id WHERE d.id = :d ORDER BY a.id",
             d=r.deliveries["email"][0])
    assert [(n, o) for n, o, _ in rows] == [(1, "transient"), (2, "transient"), (3, "sent")]
    assert rows[0][2] == "TransientError"
    assert states(ev["return_id"])[("refund_processed", "email")] == "sent"


def test_permanent_failure_is_failed_after_one_attempt(tenant: str) -> None:
    ev = event("refund_processed", tenant=tenant, email="fail-permanent@example.com", phone=None)
    r = ingest([ev])
    deliver(r)
    deliver(r)  # a redelivered message changes nothing
    assert states(ev["return_id"])[("refund_processed", "email")] == "failed"
    assert q("SELECT count(*) FROM delivery_attempts WHERE delivery_id = :d",
             d=r.deliveries["email"][0]) == [(1,)]


def test_exhausted_goes_dead_then_replay_sends(tenant: str) -> None:
    ev = event("label_created", tenant=tenant, email="fail-transient-3@example.com", phone=None)
    r = ingest([ev])
    settings = Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.02)
    for _ in range(3):
        with session_scope() as s:
            s.execute(text("UPDATE deliveries SET next_attempt_at = now() WHERE state = 'retrying'"))
        deliver(r, settings)
    email_id = r.deliveries["email"][0]
    with session_scope() as s:
        dead = dlq_list(s, tenant=tenant)
    assert [d["id"] for d in dead] == [email_id]
    with session_scope() as s:
        again = dlq_replay(s, ids=[email_id])
    assert again == {"email": [email_id]}
    deliver(IngestResult(deliveries={"email": [email_id]}), settings)  # type: ignore[arg-type]
    assert states(ev["return_id"])[("label_created", "email")] == "sent"


def test_the_same_delivery_claimed_twice_sends_once(tenant: str) -> None:
    import threading

    ev = event("refund_processed", tenant=tenant)
    r = ingest([ev])
    threads = [threading.Thread(target=deliver, args=(r,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for v in r.deliveries.values() for i in v]
    sends = q("SELECT delivery_id, count(*) FROM sandbox_messages WHERE delivery_id = ANY(:ids) "
              "GROUP BY 1", ids=ids)
    assert sorted(sends) == sorted((i, 1) for i in ids)


def test_a_waiting_delivery_is_skipped_when_a_newer_milestone_arrives(tenant: str) -> None:
    rid = uid("RMA-")
    transit = event("in_transit", tenant=tenant, return_id=rid, phone="+14155550199",
                    email=None, at=later(0))
    r1 = ingest([transit])
    # the SMS fails transiently and waits for a retry far in the future
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET recipient = 'fail-always' WHERE id = :i"),
                  {"i": r1.deliveries["sms"][0]})
    deliver(r1, Settings(max_attempts=5, backoff_base_s=100, backoff_max_s=100))
    assert states(rid)[("in_transit", "sms")] == "retrying"
    # when the refund is processed
    r2 = ingest([event("refund_processed", tenant=tenant, return_id=rid, at=later(60))])
    # then the stale "in transit" SMS is skipped, never sent
    assert r2.superseded == 1
    assert states(rid)[("in_transit", "sms")] == "skipped"


def test_sweeper_finds_due_and_lost_deliveries(tenant: str) -> None:
    r = ingest([event("return_approved", tenant=tenant)])  # never enqueued: "lost"
    ids = sorted(i for v in r.deliveries.values() for i in v)
    with session_scope() as s:
        assert not set(ids) & {i for v in due_deliveries(s, lease_s=3600).values() for i in v}
        s.execute(text("UPDATE deliveries SET updated_at = now() - interval '1 hour' "
                       "WHERE id = ANY(:ids)"), {"ids": ids})
    with session_scope() as s:
        found = {i for v in due_deliveries(s, lease_s=60).values() for i in v}
    assert set(ids) <= found


def test_render_failure_is_permanent_and_recorded(tenant: str, monkeypatch: Any) -> None:
    from return_notify.pipeline import deliver as deliver_mod
    from return_notify.templating.render import TemplateRenderError

    def broken(*_: Any, **__: Any) -> Any:
        raise TemplateRenderError("email/label_created.html.j2", "undefined variable: x")

    monkeypatch.setattr(deliver_mod, "render", broken)
    ev = event("label_created", tenant=tenant, phone=None)
    r = ingest([ev])
    deliver(IngestResult(deliveries={"email": r.deliveries["email"]}))  # type: ignore[arg-type]
    assert states(ev["return_id"])[("label_created", "email")] == "failed"
    err = q("SELECT error_class FROM delivery_attempts WHERE delivery_id = :d",
            d=r.deliveries["email"][0])
    assert err == [("TemplateRenderError",)]



def test_one_batch_with_mixed_outcomes_records_each(tenant: str) -> None:
    evs = [event("refund_processed", tenant=tenant, email=e, phone=None)
           for e in ("ok@example.com", "fail-permanent@example.com", "fail-transient-1@example.com")]
    r = ingest(evs)
    assert len(r.deliveries["email"]) == 3
    deliver(IngestResult(deliveries={"email": r.deliveries["email"]}))  # type: ignore[arg-type]
    got = dict(q("SELECT d.recipient, d.state FROM deliveries d WHERE d.id = ANY(:i)",
                 i=r.deliveries["email"]))
    assert got == {"ok@example.com": "sent", "fail-permanent@example.com": "failed",
                   "fail-transient-1@example.com": "retrying"}
    outcomes = q("SELECT outcome, count(*) FROM delivery_attempts WHERE delivery_id = ANY(:i) "
                 "GROUP BY 1 ORDER BY 1", i=r.deliveries["email"])
    assert outcomes == [("permanent", 1), ("sent", 1), ("transient", 1)]
