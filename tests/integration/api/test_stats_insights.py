"""The insights in ``GET /v1/stats`` and ``return-notify stats --json``: a seeded tenant whose
fast updates are rated high and slow ones low; the ``insights`` object shows that effect
with the numbers ``reporting/insights.py`` and ``reporting/timing.py`` compute directly,
in the caller's scope (a regional manager sees only its regions' ratings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from return_notify.reporting.insights import InsightFilter, channel_preference, effectiveness
from return_notify.reporting.timing import time_split
from return_notify.storage.db import session_scope
from tests.helpers import event
from tests.integration.api_helpers import ApiEnv, make_principals, make_tenant

pytestmark = pytest.mark.integration

#: (region, how long after the status change the event arrives, scores): the built-in effect
SEEDS = (("US", timedelta(seconds=5), (5, 4, 5, 5, 4, 5, 5, 4, 5, 5)),
         ("US", timedelta(days=2), (2, 1, 3, 2, 2, 1, 2, 3, 2, 2)),
         ("EU-DE", timedelta(hours=2), (3, 4, 3, 3, 2, 4)))


@dataclass
class Seeded:
    slug: str
    keys: dict[str, str]


def _drive(events: list[dict[str, Any]]) -> None:
    from return_notify.channels.registry import get_channel
    from return_notify.config.settings import get_settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    with session_scope() as s:
        ids = dict(ingest_batch(s, events).deliveries)
    for ch, dids in ids.items():
        deliver_batch(session_scope, ch, dids, get_channel(ch), get_settings())


@pytest.fixture(scope="module")
def seeded(api_env: ApiEnv) -> Seeded:
    tid, slug, _ = make_tenant()
    keys, _ = make_principals(tid, slug, ("owner", "eu"))
    now = datetime.now(UTC)
    evs = []
    for region, lag, scores in SEEDS:
        for score in scores:  # the retailer's survey result rides on the completion event
            evs.append(event("return_completed", tenant=slug, at=now - lag, region=region,
                             data={"satisfaction": score}, source=f"wms-{region.lower()}"))
    _drive(evs)
    _, other, _ = make_tenant()  # another tenant's ratings never show
    _drive([event("return_completed", tenant=other, at=now, data={"satisfaction": 1})])
    return Seeded(slug, keys)


def get(client: TestClient, key: str, **params: str) -> Any:
    return client.get("/v1/stats", params=params, headers={"Authorization": f"Bearer {key}"})


def direct(flt: InsightFilter) -> dict[str, Any]:
    """What reporting/insights.py and timing.py compute for ``flt`` (at the default caps)."""
    with session_scope() as s:
        return json.loads(json.dumps({
            "effectiveness": effectiveness(s, flt, latest=2000),
            "channels": channel_preference(s, flt, latest=20000),
            "time_split": time_split(s, flt, latest=20000)}, default=str))


def test_the_insights_show_the_seeded_effect_as_insights_py_computes_it(
    client: TestClient, seeded: Seeded,
) -> None:
    # when
    r = get(client, seeded.keys["owner"])
    # then: the KPIs are still there, unchanged, and beside them the insights
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"success", "latency_s", "completion", "funnel", "engagement", "load"} <= set(body)
    ins = body["insights"]
    assert ins["parts"] == ["effectiveness", "channels", "timing"]
    assert ins["limits"] == {"ratings": 2000, "notifications": 20000}
    assert ins["capped"] == {"effectiveness": False, "channels": False, "timing": False}
    mine = direct(InsightFilter(tenants=(seeded.slug,)))
    assert ins["effectiveness"] == mine["effectiveness"]
    assert ins["channel_preference"]["channels"] == mine["channels"]
    assert ins["time_split"] == mine["time_split"]
    # the effect: fast updates, high scores; every rating of this tenant, none of the other's
    eff = ins["effectiveness"]
    assert eff["rated_returns"] == sum(len(s) for _, _, s in SEEDS)
    bands = {b["band"]: b for b in eff["groups"][0]["by_time_to_update"]}
    assert {k: b["n"] for k, b in bands.items()} == {"< 1 min": 10, "< 1 day": 6, ">= 1 day": 10}
    assert bands["< 1 min"]["mean_score"]["value"] == pytest.approx(4.7)
    assert bands["< 1 day"]["mean_score"]["value"] == pytest.approx(19 / 6, abs=1e-4)
    assert bands[">= 1 day"]["mean_score"]["value"] == pytest.approx(2.0)
    assert eff["groups"][0]["effect"]["separated"] is True
    assert eff["groups"][0]["time_vs_score"]["spearman_rho"]["value"] < 0
    # one update each (the completion), and its e-mail and in-app messages
    assert [u["updates"] for u in eff["groups"][0]["by_updates"]] == ["1"]
    pref = {(c["milestone"], c["channel"]): c["sent"] for c in ins["channel_preference"]["channels"]}
    assert pref == {("return_completed", "email"): 26, ("return_completed", "inapp"): 26}
    assert [r["milestone"] for r in ins["channel_preference"]["recommendations"]] == [
        "return_completed"]
    # where the time goes: the slow ones are upstream's, the pipeline took seconds
    overall = ins["time_split"][0]
    assert overall["source"] is None and overall["channel"] is None and overall["n"] == 52
    assert overall["upstream_share"] > 0.99 and overall["pipeline_s"]["p95"] < 60
    assert {r["source"] for r in ins["time_split"] if r["source"]} == {"wms-us", "wms-eu-de"}


def test_a_regional_manager_sees_only_its_regions_satisfaction(
    client: TestClient, seeded: Seeded,
) -> None:
    # when
    eu = get(client, seeded.keys["eu"]).json()["insights"]
    # then: the EU-DE returns only, as insights.py computes for that scope
    assert eu["filters"]["regions"] == ["EU"]
    mine = direct(InsightFilter(tenants=(seeded.slug,), regions=("EU",)))
    assert eu["effectiveness"] == mine["effectiveness"]
    assert eu["effectiveness"]["rated_returns"] == 6
    assert [b["band"] for b in eu["effectiveness"]["groups"][0]["by_time_to_update"]] == [
        "< 1 day"]
    assert eu["channel_preference"]["channels"] == mine["channels"]
    assert sum(c["sent"] for c in eu["channel_preference"]["channels"]) == 12
    assert eu["time_split"] == mine["time_split"] and eu["time_split"][0]["n"] == 12
    assert {r["source"] for r in eu["time_split"] if r["source"]} == {"wms-eu-de"}
    # and it may not widen its scope to see the US ratings
    assert get(client, seeded.keys["eu"], region="US").status_code == 403


def test_insights_can_be_chosen_or_skipped(client: TestClient, seeded: Seeded) -> None:
    key = seeded.keys["owner"]
    # when
    none, timing = get(client, key, insights="none"), get(client, key, insights="timing")
    bad = get(client, key, insights="effectiveness,astrology")
    # then
    assert none.status_code == timing.status_code == 200
    assert "insights" not in none.json()
    assert {k: v for k, v in timing.json().items() if k != "insights"} == none.json()
    t = timing.json()["insights"]
    assert t["parts"] == ["timing"] and "time_split" in t
    assert "effectiveness" not in t and "channel_preference" not in t
    assert bad.status_code == 422 and "astrology" in bad.text


def test_stats_json_prints_the_same_insights(
    client: TestClient, seeded: Seeded, api_env: ApiEnv,
) -> None:
    # given
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    # when: the CLI narrowed to EU, and the owner's GET narrowed alike
    cli = subprocess.run(
        [sys.executable, "-m", "return_notify.cli", "stats", "--json", "--tenant", seeded.slug,
         "--region", "EU", "--since", since],
        env={**os.environ, **api_env.env()}, capture_output=True, text=True, timeout=60)
    api = get(client, seeded.keys["owner"], region="EU", since=since)
    # then
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["insights"] == api.json()["insights"]
    assert printed["insights"]["effectiveness"]["rated_returns"] == 6
    assert set(printed) >= {"events", "deliveries", "latency_s", "kpis", "insights"}
    # and the tables: every insight titled on the terminal
    table = subprocess.run(
        [sys.executable, "-m", "return_notify.cli", "stats", "--tenant", seeded.slug],
        env={**os.environ, **api_env.env(), "COLUMNS": "160"}, capture_output=True,
        text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    for title in ("Satisfaction by time to status update", "Satisfaction by number of updates",
                  "Channel preference", "Recommended channel order", "Where the time goes"):
        assert title in table.stdout
