"""The KPIs from the aggregates equal those of the raw queries on the same rows: every
count, rate, average, histogram bucket, peak and cohort; percentiles within their
histogram's 5 %. Through ``GET /v1/stats``, ``stats --json`` and ``report`` too.

A year of generated history (``devtools.history``, ending 2025-06-01) in a scratch
database, with in-app reads, repeat and stale events, a return initiated twice and
rejected events added, rolled up; then live rows after the watermark.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.reporting import kpis, reads, throughput
from return_notify.reporting.rollup import rollup
from return_notify.storage.db import get_engine, session_scope
from tests.helpers import event

pytestmark = pytest.mark.integration

END = datetime(2025, 6, 1, 10, 30, tzinfo=UTC)
_PERCENTILE = re.compile(r"(^|_)p\d\d$")


def close(raw: Any, rolled: Any, path: str = "") -> list[str]:
    """Where ``rolled`` differs from ``raw``: exactly, or beyond 5 % for a percentile."""
    if isinstance(raw, dict) and isinstance(rolled, dict):
        if raw.keys() != rolled.keys():
            return [f"{path}: keys {sorted(raw)} != {sorted(rolled)}"]
        return [d for k in raw for d in close(raw[k], rolled[k], f"{path}.{k}")]
    if isinstance(raw, list) and isinstance(rolled, list):
        if len(raw) != len(rolled):
            return [f"{path}: {len(raw)} items != {len(rolled)}"]
        return [d for i, (a, b) in enumerate(zip(raw, rolled, strict=True))
                for d in close(a, b, f"{path}[{i}]")]
    if _PERCENTILE.search(path.rsplit(".", 1)[-1]) and raw is not None and rolled is not None:
        ok = abs(raw - rolled) <= max(0.05 * abs(raw), 0.002)
        return [] if ok else [f"{path}: {raw} vs {rolled}"]
    return [] if raw == rolled else [f"{path}: {raw!r} != {rolled!r}"]


def jsonish(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))


def both(**kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw, from the aggregates) of ``stats --json``'s data for the same window."""
    with session_scope() as s:
        raw = {**throughput.pipeline_stats(s, since=kw.get("since"), tenant=kw.get("tenant")),
               "kpis": kpis.compute_kpis(s, **kw)}
    with session_scope() as s:
        assert reads.plan(s, kw.get("since"), kw.get("tenant")) is not None, "not aggregated"
        rolled = {**reads.pipeline_stats(s, since=kw.get("since"), tenant=kw.get("tenant")),
                  "kpis": reads.compute_kpis(s, **kw)}
    return jsonish(raw), jsonish(rolled)


def sql(statement: str, **params: Any) -> None:
    with session_scope() as s:
        s.execute(text(statement), params)


def roll(now: datetime | None = None) -> dict[str, Any]:
    with get_engine().connect() as conn:
        return rollup(conn, now=now).as_dict()


@pytest.fixture
def history(scratch_db: str) -> str:
    from return_notify.devtools.history import generate_history

    generate_history(get_engine(), rows=4000, end=END, tenants=3, seed=0.3)
    # what the generator does not make: in-app items (some read), events recorded as
    # repeat/stale/no_channel, a return initiated again, rejected events of no tenant
    sql("INSERT INTO inbox_items (tenant_id, customer_id, delivery_id, body, read_at) "
        "SELECT tenant_id, 'c', id, 'hi', CASE WHEN id % 2 = 0 THEN sent_at END "
        "FROM deliveries WHERE channel = 'inapp' AND id % 3 = 0")
    sql("UPDATE events SET disposition = (ARRAY['repeat', 'stale', 'no_channel'])[1 + id % 3] "
        "WHERE id % 17 = 0")
    sql("INSERT INTO events (id, tenant_id, event_id, return_pk, milestone, occurred_at, "
        "received_at, disposition, payload) SELECT rsn_month_id(nextval('events_id_seq'), "
        "TIMESTAMPTZ '2025-03-20 08:00+00'), tenant_id, 'again-' || id, return_pk, "
        "'return_initiated', TIMESTAMPTZ '2025-03-20 07:59+00', TIMESTAMPTZ '2025-03-20 08:00+00', "
        "'repeat', '{}' FROM events WHERE milestone = 'return_initiated' "
        "AND occurred_at < '2025-03-01' ORDER BY id LIMIT 3")
    sql("INSERT INTO rejected_events (id, received_at, tenant, errors, payload) SELECT "
        "rsn_month_id(nextval('rejected_events_id_seq'), at), at, NULL, '[]', '{}' FROM "
        "generate_series(TIMESTAMPTZ '2024-06-03 10:00+00', '2025-05-30', '9 days') at")
    result = roll()
    assert result["hours"] > 24 * 365 and result["watermark"]
    return scratch_db


WINDOWS = [
    {},
    {"since": datetime(2025, 3, 17, 13, 47, 12, tzinfo=UTC)},  # mid-month, mid-day, mid-hour
    {"since": datetime(2025, 3, 1, tzinfo=UTC), "period": "day"},  # a whole month
    {"since": datetime(2025, 5, 31, 22, 10, tzinfo=UTC), "period": "month"},  # the last hours
    {"since": datetime(2024, 1, 1, tzinfo=UTC)},  # before everything
]


def test_the_aggregates_give_the_raw_numbers(history: str) -> None:
    with session_scope() as s:
        tenants = [t for (t,) in s.execute(text("SELECT slug FROM tenants ORDER BY id"))]
    for window in WINDOWS:
        for tenant in (None, tenants[1]):
            raw, rolled = both(tenant=tenant, **window)
            assert raw["deliveries"]["total"] or window.get("since") == WINDOWS[3]["since"]
            assert close(raw, rolled) == [], (window, tenant)


def test_a_change_to_an_hour_already_rolled_up_counts_after_the_next_rollup(
        history: str) -> None:
    # given: a bounce reported today for last year's e-mails, and new events right now
    sql("UPDATE deliveries SET state = 'failed', last_error = 'bounced: gone' "
        "WHERE channel = 'email' AND state = 'delivered' AND id % 5 = 0")
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ingest_batch(s, [event("return_initiated", tenant="acme-outfitters",
                               at=datetime.now(UTC) - timedelta(hours=1))])
    raw, rolled = both()
    assert raw["kpis"]["success"] != rolled["kpis"]["success"]  # not rolled up yet
    assert raw["events"] == rolled["events"]  # after the watermark: read live
    # when
    roll()
    # then
    raw, rolled = both()
    assert close(raw, rolled) == []


def test_without_the_old_day_rows_the_numbers_stay_the_raw_ones(history: str) -> None:
    # given: day rows kept for one whole month before April 2025's (a fixed "now", so
    # whatever today is, the day rows before 2025-04-01 go and the later ones stay)
    def day_rows() -> tuple[datetime | None, int]:
        with session_scope() as s:
            return s.execute(text(
                "SELECT min(bucket), count(*) FROM stats_scope_latency WHERE grain = 'd'")).one()

    before = day_rows()
    with get_engine().connect() as conn:
        rollup(conn, now=datetime(2025, 5, 20, tzinfo=UTC), daily_months=1)
    oldest, left = day_rows()
    assert oldest == datetime(2025, 4, 1, tzinfo=UTC) and 0 < left < before[1] / 3
    # then every window still gives the raw numbers: a since before 2025-04-01 reads its
    # first (partial) month from the raw rows
    with session_scope() as s:
        found = reads.plan(s, WINDOWS[1]["since"], None)
        assert found is not None and found[0].daily_since == datetime(2025, 4, 1, tzinfo=UTC)
    for window in WINDOWS:
        raw, rolled = both(**window)
        assert close(raw, rolled) == [], window
    # and a change to an hour of a month without day rows re-rolls that whole month
    sql("UPDATE deliveries SET state = 'failed', last_error = 'bounced: gone' "
        "WHERE channel = 'email' AND state = 'delivered' AND created_at >= '2025-02-10' "
        "AND created_at < '2025-02-11'")
    with get_engine().connect() as conn:
        rollup(conn, now=datetime(2025, 5, 20, tzinfo=UTC), daily_months=1)
    assert day_rows()[0] == datetime(2025, 4, 1, tzinfo=UTC)  # the month's days went again
    for window in (WINDOWS[0], {"since": datetime(2025, 2, 5, 6, tzinfo=UTC)}):
        raw, rolled = both(**window)
        assert close(raw, rolled) == [], window


def test_hour_rows_answer_a_window_of_the_last_days(history: str) -> None:
    from return_notify.pipeline.ingest import ingest_batch

    now = datetime.now(UTC).replace(microsecond=0)
    with session_scope() as s:
        ingest_batch(s, [event(m, tenant="nordhaus", return_id="R-recent", at=now - timedelta(hours=h))
                         for h, m in ((30, "return_initiated"), (20, "return_approved"),
                                      (2, "label_created"))])
    roll(now=now + timedelta(hours=2))  # these hours rolled into hour rows
    since = now - timedelta(days=2, minutes=13)
    with session_scope() as s:
        # a window ending now and longer than the exact one reads the hour rows
        win = reads.plan(s, since, None)
        assert win is not None and win[0].hourly_since is not None
    raw, rolled = both(since=since, period="day")
    assert close(raw, rolled) == []


def test_the_api_the_cli_and_the_report_show_what_they_showed_before(
        history: str, tmp_path: Any) -> None:
    from fastapi.testclient import TestClient

    from return_notify.access.principals import create_principal, operator
    from return_notify.api.app import create_app
    from return_notify.reporting.html import render_report
    from tests.integration.cli_helpers import run_cli

    with session_scope() as s:
        tid, slug = s.execute(text("SELECT id, slug FROM tenants ORDER BY id LIMIT 1")).one()
        _, key = create_principal(s, operator(tid, slug, "test"), "owner-1", "owner")
        before = jsonish(kpis.compute_kpis(s, tenant=slug))
        before_all = jsonish({**throughput.pipeline_stats(s), "kpis": kpis.compute_kpis(s)})
    env = {"RSN_DATABASE_URL": get_engine().url.render_as_string(hide_password=False)}
    with TestClient(create_app()) as client:
        api = client.get("/v1/stats", headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 200

    def kpis_only(data: dict[str, Any]) -> dict[str, Any]:  # the insights: their own tests
        return {k: v for k, v in data.items() if k != "insights"}

    assert close(before, kpis_only(api.json())) == []
    assert close(before_all, kpis_only(json.loads(run_cli("stats", "--json", env=env)))) == []
    out = tmp_path / "report.html"
    run_cli("report", "--out", str(out), env=env)
    embedded = re.search(r'id="rsn-report-data">(.*?)</script>', out.read_text(), re.S)
    assert embedded is not None
    report = json.loads(embedded.group(1).replace("<\\/", "</"))
    assert close(before_all["kpis"], kpis_only(report)) == []
    assert "<svg" in render_report(before_all["kpis"])


SCOPES = [
    kpis.ReturnScope(regions=("EU",)),  # a region: its sub-regions EU-DE, EU-FR, EU-ES
    kpis.ReturnScope(regions=("EU-DE",)),  # a sub-region
    kpis.ReturnScope(categories=("home",)),  # a category
    kpis.ReturnScope(regions=("CA", "EU", "EU-FR")),  # several regions (EU-FR within EU)
    kpis.ReturnScope(regions=("EU", "UK"), categories=("apparel", "home")),
]


def both_scoped(scope: kpis.ReturnScope, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(raw, from the scoped aggregates) of the scope's KPIs for the same window."""
    with session_scope() as s:
        raw = kpis.compute_kpis(s, scope=scope, **kw)
    with session_scope() as s:
        assert reads.plan(s, kw.get("since"), kw.get("tenant"), scope) is not None
        rolled = reads.compute_kpis(s, scope=scope, **kw)
    return jsonish(raw), jsonish(rolled)


def burst(region: str, n: int, at: str) -> None:
    """``n`` events of one return in ``region`` received in the minute ``at``."""
    sql("INSERT INTO events (id, tenant_id, event_id, return_pk, milestone, occurred_at, "
        "received_at, disposition, payload) SELECT rsn_month_id(nextval('events_id_seq'), "
        "CAST(:at AS timestamptz)), r.tenant_id, 'burst-' || r.id || '-' || g, r.id, "
        "'in_transit', CAST(:at AS timestamptz), CAST(:at AS timestamptz) + g * interval '1 s', "
        "'repeat', '{}' FROM (SELECT * FROM returns WHERE region = :region ORDER BY id LIMIT 1) r, "
        "generate_series(1, :n) g", region=region, n=n, at=at)


def test_scoped_aggregates_give_the_raw_numbers_of_the_scope(history: str) -> None:
    with session_scope() as s:
        tenants = [t for (t,) in s.execute(text("SELECT slug FROM tenants ORDER BY id"))]
        peak = kpis.compute_kpis(s, scope=SCOPES[0])["load"]["peak_minute"]["events"]
    # given: a minute busier in EU than any before, though neither EU-DE's nor EU-FR's
    # busiest (the busiest minute of a scope of several keys is not a sum of theirs)
    burst("EU-DE", peak, "2025-02-10 03:17:00+00")
    burst("EU-FR", peak, "2025-02-10 03:17:00+00")
    burst("CA", peak, "2025-02-10 03:17:00+00")
    roll()
    for scope in SCOPES:
        for window in WINDOWS:
            for tenant in (None, tenants[0]):
                raw, rolled = both_scoped(scope, tenant=tenant, **window)
                assert raw["success"]["by_region"] or window.get("since") == WINDOWS[3]["since"] \
                    or tenant, (scope, window, tenant)
                assert close(raw, rolled) == [], (scope, window, tenant)
    # the scopes are not all the same rows: EU-DE is part of EU, EU more than EU-DE
    eu, de = (both_scoped(sc)[0]["load"] for sc in SCOPES[:2])
    assert 0 < de["events"] < eu["events"]
    assert eu["peak_minute"] == {"at": "2025-02-10T03:17:00+00:00", "events": 2 * peak}


def test_scoped_aggregates_follow_changes_and_live_rows(history: str) -> None:
    # given: bounces reported now for old e-mails, and an event after the watermark
    sql("UPDATE deliveries SET state = 'failed', last_error = 'bounced: gone' "
        "WHERE channel = 'email' AND state = 'delivered' AND id % 7 = 0")
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ingest_batch(s, [event("return_initiated", tenant="acme-outfitters", region="EU-DE",
                               at=datetime.now(UTC) - timedelta(hours=1))])
    # when
    roll()
    # then
    for scope in SCOPES:
        raw, rolled = both_scoped(scope)
        assert close(raw, rolled) == [], scope


def test_a_database_rolled_up_before_the_scoped_aggregates_fills_them(history: str) -> None:
    # given: the state of a database rolled up before migration 0013
    for table in ("stats_scope_deliveries", "stats_scope_latency", "stats_scope_event_hours",
                  "stats_scope_sent_hours", "stats_scope_cohorts"):
        sql(f"DELETE FROM {table}")
    sql("DELETE FROM stats_state WHERE name = 'scope_watermark'")
    with session_scope() as s:
        assert reads.plan(s, None, None, SCOPES[0]) is None  # raw until caught up
    # when
    roll()
    # then
    for scope in SCOPES[:3]:
        raw, rolled = both_scoped(scope)
        assert close(raw, rolled) == [], scope


def test_a_principal_limited_to_regions_reads_its_scope_from_the_aggregates(
        history: str) -> None:
    from fastapi.testclient import TestClient

    from return_notify.access.principals import create_principal, operator
    from return_notify.api.app import create_app

    with session_scope() as s:
        tid, slug = s.execute(text("SELECT id, slug FROM tenants ORDER BY id LIMIT 1")).one()
        by = operator(tid, slug, "test")
        _, key = create_principal(s, by, "regional", "regional_manager", regions=["EU", "CA"])
        _, cat_key = create_principal(s, by, "cat", "category_manager", categories=["home"])
    with TestClient(create_app()) as client:
        # the KPIs alone (the insights are compared in api/test_stats_insights.py)
        regional = client.get("/v1/stats?insights=none",
                               headers={"Authorization": f"Bearer {key}"})
        narrowed = client.get("/v1/stats?insights=none&region=EU-DE&since=2025-01-01T00:00:00Z",
                              headers={"Authorization": f"Bearer {key}"})
        category = client.get("/v1/stats?insights=none",
                              headers={"Authorization": f"Bearer {cat_key}"})
    assert {r.status_code for r in (regional, narrowed, category)} == {200}
    with session_scope() as s:
        want = [kpis.compute_kpis(s, tenant=slug, scope=kpis.ReturnScope(("EU", "CA"))),
                kpis.compute_kpis(s, tenant=slug, since=datetime(2025, 1, 1, tzinfo=UTC),
                                  scope=kpis.ReturnScope(("EU-DE",))),
                kpis.compute_kpis(s, tenant=slug, scope=kpis.ReturnScope((), ("home",)))]
        assert reads.plan(s, None, slug, kpis.ReturnScope(("EU", "CA"))) is not None
    for expected, got in zip(want, (regional, narrowed, category), strict=True):
        assert close(jsonish(expected), got.json()) == []
