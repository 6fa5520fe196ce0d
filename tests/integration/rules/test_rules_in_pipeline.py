"""Rules in the pipeline: the cached resolver on PostgreSQL, and a rule per region changing
what is actually sent (ingest + deliver in-process, then through real Celery workers)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text

from return_notify.access.principals import operator
from return_notify.rules.resolver import CACHE_TTL_S, invalidate, prefetch, resolve
from return_notify.rules.store import RuleSpec, create_rule, disable_rule, update_rule
from return_notify.storage.db import get_engine, session_scope
from tests.helpers import event, uid, wait_until
from tests.integration.api_helpers import ApiEnv, make_tenant

pytestmark = pytest.mark.integration


def add_rule(tenant_id: int, slug: str, milestone: str, channels: list[str],
             region: str | None = None, category: str | None = None) -> int:
    with session_scope() as s:
        spec = RuleSpec.build(milestone, channels, region, category)
        return create_rule(s, tenant_id, spec, operator(tenant_id, slug, "test").actor).id


def sent(return_id: str) -> dict[str, str]:
    """channel → state of a return's deliveries."""
    with session_scope() as s:
        return dict(s.execute(text(
            "SELECT d.channel, d.state FROM deliveries d JOIN returns r ON r.id = d.return_pk "
            "WHERE r.return_id = :r"), {"r": return_id}).tuples().all())


def test_resolve_reads_rules_and_sees_changes_of_this_process_at_once(api_env: ApiEnv) -> None:
    tid, slug, _ = make_tenant()
    with session_scope() as s:
        before = resolve(s, tid, "EU-DE", "apparel", "label_created")
    assert before.rule_id is None  # config default, now cached
    rid = add_rule(tid, slug, "label_created", ["email"], region="EU")
    with session_scope() as s:
        assert resolve(s, tid, "EU-DE", "apparel", "label_created").rule_id == rid
        disable_rule(s, tid, rid, operator(tid, slug, "test").actor)
    with session_scope() as s:
        muted = resolve(s, tid, "EU-DE", "apparel", "label_created")
    assert muted.channels == () and muted.rule_id == rid


def test_a_batch_of_200_events_costs_at_most_one_query(api_env: ApiEnv) -> None:
    tenants = [make_tenant() for _ in range(3)]
    for tid, slug, _ in tenants:
        add_rule(tid, slug, "in_transit", ["email"], region="EU")
    invalidate()
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = get_engine()
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope() as s:
            prefetch(s, [t[0] for t in tenants])
            for i in range(200):
                tid = tenants[i % 3][0]
                got = resolve(s, tid, ("EU-DE", "US", None)[i % 3], "apparel", "in_transit")
                assert got.channels == (("email",) if i % 3 == 0 else ("sms", "inapp"))
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)
    assert len([q for q in statements if "notification_rules" in q]) == 1


def test_rule_per_region_changes_what_is_sent(api_env: ApiEnv) -> None:
    """Needs ``resolve`` wired into ``pipeline.ingest.ingest_batch``."""
    from return_notify.channels.sandbox import SandboxChannel
    from return_notify.config.settings import Settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    # given EU: email only, US: SMS only, EU-DE electronics: muted (disabled)
    tid, slug, _ = make_tenant()
    add_rule(tid, slug, "label_created", ["email"], region="EU")
    add_rule(tid, slug, "label_created", ["sms"], region="US")
    muted = add_rule(tid, slug, "label_created", ["email"], region="EU-DE", category="electronics")
    with session_scope() as s:
        disable_rule(s, tid, muted, operator(tid, slug, "test").actor)
    evs = {name: event("label_created", tenant=slug, region=region, product_category=cat)
           for name, region, cat in [("eu", "EU-FR", "apparel"), ("us", "US", "apparel"),
                                     ("jp", "JP", "apparel"), ("muted", "EU-DE", "electronics")]}
    # when the events are ingested and delivered
    with session_scope() as s:
        result = ingest_batch(s, list(evs.values()))
    settings = Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    for ch, ids in result.deliveries.items():
        deliver_batch(session_scope, ch, ids, SandboxChannel(ch, engine=get_engine()), settings)
    # then each region got the channels of its rule, and the muted scope nothing
    assert sent(evs["eu"]["return_id"]) == {"email": "sent"}
    assert sent(evs["us"]["return_id"]) == {"sms": "sent"}
    assert sent(evs["jp"]["return_id"]) == {"email": "sent", "sms": "sent", "inapp": "sent"}
    assert sent(evs["muted"]["return_id"]) == {}
    with session_scope() as s:
        disposition = s.execute(text("SELECT disposition FROM events WHERE event_id = :e"),
                                {"e": evs["muted"]["event_id"]}).scalar_one()
        to_sandbox = s.execute(text(
            "SELECT r.return_id, s.channel FROM sandbox_messages s JOIN deliveries d "
            "ON d.id = s.delivery_id JOIN returns r ON r.id = d.return_pk "
            "WHERE d.tenant_id = :t"), {"t": tid}).tuples().all()
    assert disposition == "no_channel"
    assert sorted(to_sandbox) == sorted([
        (evs["eu"]["return_id"], "email"), (evs["us"]["return_id"], "sms"),
        (evs["jp"]["return_id"], "email"), (evs["jp"]["return_id"], "sms"),
        (evs["jp"]["return_id"], "inapp")])


@pytest.fixture(scope="module")
def worker(api_env: ApiEnv, tmp_path_factory: Any) -> Iterator[Any]:
    from return_notify.devtools.processes import start_worker

    proc = start_worker(api_env.env(RSN_INAPP_PROVIDER="sandbox"), concurrency=2,
                        logdir=str(tmp_path_factory.mktemp("logs")))
    yield proc
    proc.stop(20)


def test_rule_per_region_through_celery_workers(api_env: ApiEnv, worker: Any) -> None:
    """Needs ``resolve`` wired into ingest; a rule change reaches the worker within the TTL."""
    from return_notify.producer import publish_many

    tid, slug, _ = make_tenant()
    eu = add_rule(tid, slug, "refund_processed", ["email"], region="EU")
    add_rule(tid, slug, "refund_processed", ["sms", "inapp"], region="US")
    data = {"refund_amount": "49.90", "currency": "EUR", "refund_method": "card"}
    de = event("refund_processed", tenant=slug, region="EU-DE", data=data)
    us = event("refund_processed", tenant=slug, region="US", data=data)
    publish_many([de, us])
    wait_until(lambda: sent(de["return_id"]) == {"email": "sent"}
               and sent(us["return_id"]) == {"sms": "sent", "inapp": "sent"},
               what="EU by email only, US by SMS and in-app")
    # a change made elsewhere (the admin API) reaches the worker's cache within its TTL
    with session_scope() as s:
        update_rule(s, tid, eu, {"channels": ["sms"]}, operator(tid, slug, "test").actor)
    time.sleep(CACHE_TTL_S + 0.5)
    fr = event("refund_processed", tenant=slug, region="EU-FR", return_id=uid("RMA-"), data=data)
    publish_many([fr])
    wait_until(lambda: sent(fr["return_id"]) == {"sms": "sent"}, what="EU now by SMS")
