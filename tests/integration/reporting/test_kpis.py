"""The business KPIs on real PostgreSQL: success, latency, completion, funnel, engagement, load."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.reporting.kpis import compute_kpis
from return_notify.storage.db import session_scope
from tests.helpers import event, uid

pytestmark = pytest.mark.integration


def at(day: str, hm: str = "10:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{hm}:00+00:00")


def ingest(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        return dict(ingest_batch(s, events).deliveries)


def sql(statement: str, **params: Any) -> None:
    with session_scope() as s:
        s.execute(text(statement), params)


def kpis(tenant: str, **kw: Any) -> dict[str, Any]:
    with session_scope() as s:
        return compute_kpis(s, tenant=tenant, **kw)


def test_completion_rate_per_week_and_the_funnel(svc: Any) -> None:
    # given: five returns initiated over two weeks (weeks start on Monday)
    t = uid("t-")
    paths = {
        "R5": [("return_initiated", "2026-02-25"), ("return_completed", "2026-03-02")],
        "R1": [(m, "2026-03-04") for m in (
            "return_initiated", "return_approved", "label_created", "shipment_dispatched",
            "in_transit", "warehouse_received", "inspection_completed")]
              + [("refund_processed", "2026-03-10")],
        "R2": [("return_initiated", "2026-03-04"), ("return_rejected", "2026-03-05")],
        "R3": [("return_initiated", "2026-03-05"), ("return_approved", "2026-03-05"),
               ("return_cancelled", "2026-03-06")],
        "R4": [("return_initiated", "2026-03-05"), ("label_created", "2026-03-06")],
    }
    evs = []
    for rid, steps in paths.items():
        for i, (m, day) in enumerate(steps):
            evs.append(event(m, tenant=t, return_id=f"{rid}-{t}", at=at(day, f"1{i}:00")))
    ingest(evs)
    # when
    k = kpis(t)
    # then
    assert k["completion"]["periods"] == [
        {"period": "2026-02-23", "initiated": 1, "completed": 1, "rejected": 0, "cancelled": 0,
         "rate": 1.0},
        {"period": "2026-03-02", "initiated": 4, "completed": 1, "rejected": 1, "cancelled": 1,
         "rate": 0.25},
    ]
    assert k["completion"]["total"]["rate"] == 0.4
    assert [(f["milestone"], f["returns"]) for f in k["funnel"]] == [
        ("return_initiated", 5), ("return_approved", 4), ("label_created", 3),
        ("shipment_dispatched", 2), ("in_transit", 2), ("warehouse_received", 2),
        ("inspection_completed", 2), ("restocked", 2), ("refund_processed", 2),
        ("return_completed", 1)]
    later = kpis(t, since=at("2026-03-01"), period="month")
    assert later["completion"]["periods"] == [
        {"period": "2026-03-01", "initiated": 4, "completed": 1, "rejected": 1, "cancelled": 1,
         "rate": 0.25}]


def test_success_latency_and_engagement_by_channel(svc: Any) -> None:
    # given: 4 label_created (email, sms, inapp) and one e-mail that fails at the provider
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch

    t = uid("t-")
    occurred = datetime.now(UTC) - timedelta(minutes=5)
    evs = [event("label_created", tenant=t, at=occurred) for _ in range(4)]
    evs.append(event("return_approved", tenant=t, at=occurred,
                     email="fail-permanent@example.com", phone=None))
    ids = ingest(evs)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, get_channel(ch), get_settings())
    e, s, i = sorted(ids["email"]), sorted(ids["sms"]), sorted(ids["inapp"])
    # provider feedback, as the webhooks record it
    for ch, secs in (("email", 10), ("sms", 20), ("inapp", 1)):
        sql("UPDATE deliveries SET sent_at = occurred_at + make_interval(secs => :s) "
            "WHERE channel = :c AND id = ANY(:ids) AND sent_at IS NOT NULL", s=secs, c=ch,
            ids=ids[ch])
    sql("UPDATE deliveries SET state = 'delivered', delivered_at = occurred_at + interval '70 s' "
        "WHERE id = ANY(:ids)", ids=[e[0], e[1], s[1], s[2]])
    sql("UPDATE deliveries SET state = 'failed', last_error = 'bounced: 550 unknown user' "
        "WHERE id = :i", i=e[2])
    sql("UPDATE deliveries SET state = 'failed', last_error = 'twilio undelivered (error 30003)' "
        "WHERE id = :i", i=s[0])
    for n, did in enumerate(i[:4]):
        sql("INSERT INTO inbox_items (tenant_id, customer_id, delivery_id, body, milestone, read_at) "
            "SELECT tenant_id, 'cust-1', id, 'x', milestone, CASE WHEN :r THEN now() END "
            "FROM deliveries WHERE id = :d ON CONFLICT (delivery_id) DO UPDATE "
            "SET read_at = EXCLUDED.read_at", d=did, r=n < 2)
    # when
    k = kpis(t)
    # then: success = sent or delivered over settled; a bounce after sending is a failure
    by_ch = {r["key"]: r for r in k["success"]["by_channel"]}
    assert (by_ch["email"]["total"], by_ch["email"]["sent"], by_ch["email"]["failed"],
            by_ch["email"]["success_rate"]) == (5, 3, 2, 0.6)
    assert by_ch["sms"]["success_rate"] == 0.75 and by_ch["inapp"]["success_rate"] == 1.0
    assert [(r["key"], r["total"], r["sent"]) for r in k["success"]["by_provider"]] == [
        ("inbox", 5, 5), ("sandbox", 9, 6)]
    assert [(r["key"], r["success_rate"]) for r in k["success"]["by_tenant"]] == [
        (t, round(11 / 14, 4))]
    assert [r["key"] for r in k["success"]["by_region"]] == ["US"]
    lat = k["latency_s"]["by_channel"]
    assert lat["email"]["to_sent"] == {"n": 4, "avg": 10.0, "p50": 10.0, "p95": 10.0}
    assert lat["email"]["to_delivered"]["n"] == 2 and lat["email"]["to_delivered"]["avg"] == 70.0
    assert k["latency_s"]["all"]["to_sent"]["n"] == 13
    assert sum(k["latency_histogram"]["counts"]) == 13
    hist = dict(zip(k["latency_histogram"]["edges_s"], k["latency_histogram"]["counts"], strict=True))
    assert (hist[1.0], hist[10.0]) == (5, 8)  # in-app in [1 s, 2 s); e-mail and SMS in [10 s, 30 s)
    eng = {(r["milestone"], r["channel"]): r for r in k["engagement"]}
    assert {x: eng[("label_created", "email")][x] for x in ("sent", "delivered", "undelivered",
                                                            "bounced")} == {
        "sent": 4, "delivered": 2, "undelivered": 1, "bounced": 1}
    assert eng[("label_created", "sms")]["undelivered_rate"] == 0.25
    assert eng[("label_created", "inapp")]["read_rate"] == 0.5
    assert eng[("return_approved", "email")]["sent"] == 0


def test_load_pattern_and_throughput_buckets(svc: Any) -> None:
    # given: events received on a Wednesday afternoon and a Saturday morning
    t = uid("t-")
    evs = [event("return_initiated", tenant=t) for _ in range(6)]
    ingest(evs)
    for ev, when in zip(evs, ["14:05"] * 3 + ["14:40"] * 2, strict=False):
        sql("UPDATE events SET received_at = :w WHERE event_id = :e", w=at("2026-03-04", when),
            e=ev["event_id"])
    sql("UPDATE events SET received_at = :w WHERE event_id = :e", w=at("2026-03-07", "09:00"),
        e=evs[5]["event_id"])
    sql("DELETE FROM deliveries d USING tenants x WHERE x.id = d.tenant_id AND x.slug = :t", t=t)
    # when
    load = kpis(t)["load"]
    thr = kpis(t)["throughput"]
    # then
    assert load["by_hour_utc"][14] == 5 and load["by_hour_utc"][9] == 1 and load["events"] == 6
    assert load["by_weekday"] == [0, 0, 5, 0, 0, 1, 0]
    assert load["peak_hour"] == {"at": "2026-03-04T14:00:00+00:00", "events": 5}
    assert load["peak_minute"] == {"at": "2026-03-04T14:05:00+00:00", "events": 3}
    assert thr["bucket"] == "hour"
    assert [(p["t"][:13], p["events"]) for p in thr["points"]] == [
        ("2026-03-04T14", 5), ("2026-03-07T09", 1)]


def test_stats_command_prints_the_kpis(svc: Any) -> None:
    from tests.integration.cli_helpers import run_cli

    t = uid("t-")
    ingest([event("return_initiated", tenant=t)])
    data = json.loads(run_cli("stats", "--json", "--tenant", t, env=svc.env()))
    # the keys the demo and the benchmark read are still there
    assert data["events"]["accepted"] == 1 and "by_channel" in data["deliveries"]
    assert "occurred_to_sent_p95" in data["latency_s"]
    assert data["kpis"]["completion"]["total"]["initiated"] == 1
    assert data["kpis"]["filters"]["tenant"] == t
    out = run_cli("stats", "--tenant", t, "--since", "1h", env=svc.env())
    assert "Delivery success" in out and "Return funnel" in out


def test_a_scope_keeps_only_returns_in_its_regions_and_categories(svc: Any) -> None:
    # given: returns initiated in EU-DE (electronics), EU-FR (apparel), EUR and US
    from return_notify.reporting.kpis import ReturnScope

    t = uid("t-")
    where = {"A": ("EU-DE", "electronics"), "B": ("eu-fr", "Apparel"), "C": ("EUR", "apparel"),
             "D": ("US", "electronics")}
    evs = []
    for rid, (region, cat) in where.items():
        evs.append(event("return_initiated", tenant=t, return_id=f"{rid}-{t}", region=region,
                         product_category=cat, at=at("2026-03-04")))
    evs.append(event("refund_processed", tenant=t, return_id=f"B-{t}", region="eu-fr",
                     product_category="Apparel", at=at("2026-03-05")))
    ingest(evs)
    # when
    eu = kpis(t, scope=ReturnScope(("EU",), ()))
    eu_apparel = kpis(t, scope=ReturnScope(("EU",), ("apparel",)))
    electronics = kpis(t, scope=ReturnScope((), ("electronics",)))
    # then: EU covers its sub-regions (any case), not EUR; categories compare case-insensitively
    assert eu["completion"]["total"]["initiated"] == 2 and eu["load"]["events"] == 3
    assert {r["key"] for r in eu["success"]["by_region"]} == {"EU-DE", "eu-fr"}
    assert eu_apparel["completion"]["total"] == {"initiated": 1, "completed": 1, "rejected": 0,
                                                 "cancelled": 0, "rate": 1.0}
    assert eu_apparel["filters"] == {"since": None, "tenant": t, "regions": ["EU"],
                                     "categories": ["apparel"]}
    assert {r["key"] for r in electronics["success"]["by_region"]} == {"EU-DE", "US"}
    assert "regions" not in kpis(t)["filters"]  # `stats --json` keeps its shape


def test_since_accepts_durations_and_iso_times() -> None:
    from return_notify.reporting.kpis import parse_since

    now = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-03-01T00:00:00") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_since(" ") is None
    with pytest.raises(ValueError, match="15m, 2h, 7d"):
        parse_since("last week")
    with pytest.raises(ValueError, match="too far back"):
        parse_since("99999999999999d")
