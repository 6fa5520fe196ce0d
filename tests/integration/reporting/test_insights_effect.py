"""The demo's synthetic stream through the real pipeline, its customers' opens, clicks and
ratings, and the analysis: it must find the effect of timeliness on satisfaction and the
channel preferences the stream has built in, and say whose the delay is."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from return_notify.reporting.insights import InsightFilter, effectiveness, recommend
from return_notify.reporting.intervals import Interval
from return_notify.reporting.timing import time_split
from return_notify.storage.db import session_scope
from tests.helpers import uid

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo_data(services: Any) -> dict[str, Any]:
    from tests.conftest import _apply

    _apply(services)
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.devtools.customers import play, switch_on
    from return_notify.devtools.sample_data import make_stream, stamp
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    tag = uid("fx")
    tenants = {f"{tag}-acme": ("US", "en-US", "America/New_York", "USD", "apparel"),
               f"{tag}-nord": ("EU-DE", "de-DE", "Europe/Berlin", "EUR", "home")}
    stream = make_stream(n_events=2600, min_returns=360, seed=3, invalid=0, tenants=tenants,
                         prefix=tag, timeliness=True, response_rate=0.9)
    since = datetime.now(UTC)
    with session_scope() as s:
        switch_on(s, tenants)
    events = stamp(stream.events)
    for i in range(0, len(events), 200):
        with session_scope() as s:
            ids = dict(ingest_batch(s, events[i:i + 200]).deliveries)
        for ch, dids in ids.items():
            for j in range(0, len(dids), 200):
                deliver_batch(session_scope, ch, dids[j:j + 200], get_channel(ch),
                              get_settings())
    with session_scope() as s:
        counts = play(s, stream, since, tenants)
    return {"stream": stream, "tenants": list(tenants), "counts": counts, "tag": tag}


def test_the_customers_opened_clicked_read_and_rated(demo_data: dict[str, Any]) -> None:
    counts, stream = demo_data["counts"], demo_data["stream"]
    assert counts["open"] > 100 and counts["click"] > 100 and counts["read"] > 100
    # every score not sent by the retailer's survey came through a rating link
    assert 0 < counts["rate"] <= len(stream.scores) - len(stream.surveyed)
    assert stream.surveyed  # and some did come on the completion event


def test_the_analysis_finds_that_timely_updates_go_with_higher_satisfaction(
    demo_data: dict[str, Any], svc: Any,
) -> None:
    # when
    with session_scope() as s:
        result = effectiveness(s, InsightFilter(tenants=tuple(demo_data["tenants"])))
        scoped = effectiveness(s, InsightFilter(tenants=(demo_data["tenants"][0],)),
                               by="region")
    group = next(g for g in result["groups"] if g["key"] is None)
    stream = demo_data["stream"]
    # then every score of the stream is there (survey and link), in the four time bands
    assert result["rated_returns"] >= len(stream.scores) * 0.95
    bands = {b["band"]: b for b in group["by_time_to_update"]}
    assert list(bands) == ["< 1 min", "< 1 h", "< 1 day", ">= 1 day"]
    means = [bands[b]["mean_score"]["value"] for b in bands]
    assert means == sorted(means, reverse=True), means  # slower, less satisfied
    assert all(bands[b]["n"] >= 20 for b in bands)
    # the fastest and slowest bands differ beyond their confidence intervals
    fast, slow = (Interval(**bands[b]["mean_score"]) for b in ("< 1 min", ">= 1 day"))
    assert not fast.overlaps(slow)
    assert group["effect"] == {"fastest_band": "< 1 min", "slowest_band": ">= 1 day",
                               "difference": pytest.approx(fast.value - slow.value, abs=1e-3),
                               "separated": True}
    assert group["effect"]["difference"] > 1.0
    rho = group["time_vs_score"]["spearman_rho"]
    assert rho["value"] < 0 and rho["high"] < 0
    # satisfied shares carry Wilson intervals that contain them
    for b in bands.values():
        share = b["satisfied_share"]
        assert share["low"] <= share["value"] <= share["high"]
    # by number of updates: every return counted once
    assert sum(u["n"] for u in group["by_updates"]) == group["n"]
    # per region, within one tenant: its one region
    assert [g["key"] for g in scoped["groups"]] == ["US"]


def test_the_recommendation_follows_the_streams_channel_preferences(
    demo_data: dict[str, Any], svc: Any,
) -> None:
    with session_scope() as s:
        recs = {r["milestone"]: r for r in recommend(s, InsightFilter(tenants=(demo_data["tenants"][0],)))}
    assert recs["label_created"]["order"][0] == "sms"
    assert recs["label_created"]["order"][-1] == "inapp"
    assert recs["refund_processed"]["order"][0] == "email"
    for ev in recs["label_created"]["evidence"]:
        assert ev["tracked"] >= recs["label_created"]["min_sample"]


def test_where_the_time_goes_is_upstream(demo_data: dict[str, Any], svc: Any) -> None:
    with session_scope() as s:
        rows = time_split(s, InsightFilter(tenants=(demo_data["tenants"][1],)))
    overall = rows[0]
    assert overall["source"] is None and overall["channel"] is None
    # the stream's sources lag minutes to days; the pipeline takes seconds
    assert overall["upstream_share"] > 0.99
    assert overall["pipeline_s"]["p50"] < 60 < overall["source_lag_s"]["p50"]
    per_channel = {r["channel"]: r["n"] for r in rows if r["source"] is None and r["channel"]}
    assert sum(per_channel.values()) == overall["n"]
    sources = {r["source"] for r in rows if r["source"] is not None}
    assert {"wms", "erp", "returns-portal"} <= sources


def test_the_report_on_the_demo_data_fills_every_insight_table(
    demo_data: dict[str, Any], svc: Any,
) -> None:
    # given
    from return_notify.reporting.html import render_report
    from return_notify.reporting.insight_summary import insights_summary
    from return_notify.reporting.kpis import compute_kpis
    from tests.integration.reporting.report_html import INSIGHT_TABLES, Charts, Tables

    tenant = demo_data["tenants"][0]
    # when
    with session_scope() as s:
        ins = insights_summary(s, tenant=tenant)
        html = render_report(compute_kpis(s, tenant=tenant), insights=ins)
    charts, tables = Charts(), Tables()
    charts.feed(html)
    tables.feed(html)
    # then: the four time bands drawn, slower ones less satisfied
    bars = [(m["data-label"], float(m["data-value"])) for m in charts.charts["satisfaction"]]
    assert [b for b, _ in bars] == ["< 1 min", "< 1 h", "< 1 day", ">= 1 day"]
    assert [v for _, v in bars] == sorted((v for _, v in bars), reverse=True)
    # every insight table has rows, and no row is without its numbers
    assert tables.sections == ["insight-effectiveness", "insight-channels", "insight-timing"]
    for table_id in INSIGHT_TABLES:
        rows = tables.tables[table_id]
        assert rows, table_id
        assert all(r and all(c.strip() for c in r) for r in rows), (table_id, rows)
    # each band's rated and mean, each channel's click rate and each split's lag are there
    assert all(r[2] != "–" for r in tables.tables["table-satisfaction-band"])
    assert all(r[5] != "–" for r in tables.tables["table-channels"] if r[3] != "0")
    assert all(r[3] != "–" for r in tables.tables["table-time-split"])
    # the recommendation of label_created puts SMS first, as the stream prefers it
    recs = {r[0]: r[1] for r in tables.tables["table-recommendations"]}
    assert recs["label_created"].startswith("sms > ")
