"""``return-notify insights`` on real PostgreSQL: the switches (audited), the analysis views
and applying a channel recommendation as a rule in one command (audited)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from sqlalchemy import text
from typer.testing import CliRunner

from tests.integration.api_helpers import ApiEnv, audit, make_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli(api_env: ApiEnv) -> Any:
    from return_notify.cli.insights import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, ["insights", *args])
        assert (result.exit_code == 0) is ok, result.output
        return json.loads(result.stdout) if "--json" in args and ok else result.output

    return run


def seed(tid: int, milestone: str, channel: str, sent: int, clicked: int,
         region: str = "US") -> None:
    """``sent`` returns each with one ``milestone`` message on ``channel`` sent an hour
    after tracking went on, ``clicked`` of them clicked."""
    from return_notify.storage.db import session_scope

    with session_scope() as s:
        s.execute(text("""
            INSERT INTO tenant_insights (tenant_id, tracking, tracking_since)
            VALUES (:t, true, now() - interval '2 hours')
            ON CONFLICT (tenant_id) DO UPDATE SET tracking = true,
                tracking_since = now() - interval '2 hours'"""), {"t": tid})
        s.execute(text("""
            WITH r AS (
                INSERT INTO returns (tenant_id, return_id, region, product_category)
                SELECT :t, :p || g, :region, 'apparel' FROM generate_series(1, :n) g
                RETURNING id, return_id),
            e AS (
                INSERT INTO events (tenant_id, event_id, return_pk, milestone, occurred_at,
                                    received_at, disposition, payload, source)
                SELECT :t, 'ev-' || r.return_id, r.id, :m, now() - interval '70 minutes',
                       now() - interval '69 minutes', 'notified', '{}', 'wms' FROM r
                RETURNING id, return_pk),
            d AS (
                INSERT INTO deliveries (tenant_id, event_pk, return_pk, channel, milestone,
                                        recipient, state, occurred_at, sent_at)
                SELECT :t, e.id, e.return_pk, :ch, :m, 'x', 'sent',
                       now() - interval '70 minutes', now() - interval '1 hour' FROM e
                RETURNING id, return_pk)
            INSERT INTO engagement_signals (tenant_id, return_pk, delivery_id, channel,
                                            milestone, kind, source, at)
            SELECT :t, d.return_pk, d.id, :ch, :m, 'click', 'redirect', now() FROM d
            ORDER BY d.id LIMIT :c"""),
            {"t": tid, "p": f"{channel}-{milestone}-{region}-", "n": sent, "c": clicked,
             "m": milestone, "ch": channel, "region": region})


def test_the_switches_are_shown_changed_and_audited(cli: Any) -> None:
    tid, slug, _ = make_tenant()
    assert cli("settings", "-t", slug, "--json") == {
        "tenant": slug, "tracking": False, "survey": False,
        "survey_milestones": ["return_completed"], "links_configured": False}
    changed = cli("settings", "-t", slug, "--tracking", "--survey", "--survey-milestones",
                  "return_completed, refund_processed", "--json")
    assert (changed["tracking"], changed["survey"], changed["survey_milestones"]) == (
        True, True, ["return_completed", "refund_processed"])
    cli("settings", "-t", slug, "--tracking", "--json")  # no change: no entry
    out = cli("settings", "-t", slug, "--survey-milestones", "return_approved", ok=False)
    assert "cannot carry the rating" in out
    assert "no tenant" in cli("settings", "-t", "no-such-tenant", ok=False)
    entries = audit(tid, "insights")
    assert [(e["action"], e["actor"][:4]) for e in entries] == [("insights.update", "cli:")]
    assert entries[0]["before"]["tracking"] is False and entries[0]["after"]["tracking"] is True


def test_apply_recommendation_sets_the_best_channels_in_one_command(cli: Any) -> None:
    # given clicks of label messages: SMS 50 %, email 20 %, in-app 5 %
    tid, slug, _ = make_tenant()
    seed(tid, "label_created", "sms", 60, 30)
    seed(tid, "label_created", "email", 60, 12)
    seed(tid, "label_created", "inapp", 60, 3)
    shown = cli("channels", "-t", slug, "--json")
    rec = next(r for r in shown["recommendations"] if r["milestone"] == "label_created")
    assert rec["order"] == ["sms", "email", "inapp"] and rec["clear_winner"] is True
    # when: a dry run, then the real thing with the best one (in-app kept)
    dry = cli("apply-recommendation", "-t", slug, "--milestone", "label_created", "--top", "1",
              "--dry-run", "--json")
    assert dry["channels"] == ["sms", "inapp"] and dry["rule_after"] is None
    assert audit(tid, "rules") == []
    done = cli("apply-recommendation", "-t", slug, "--milestone", "label_created", "--top", "1",
               "--json")
    # then the tenant-wide label rule sends SMS and in-app, audited as the recommendation
    assert done["rule_before"] is None
    assert (done["rule_after"]["channels"], done["rule_after"]["region"]) == (["sms", "inapp"],
                                                                               None)
    again = cli("apply-recommendation", "-t", slug, "--milestone", "label_created", "--top", "2",
                "--no-keep-inapp", "--json")
    assert again["rule_after"]["channels"] == ["sms", "email"]
    assert again["rule_after"]["id"] == done["rule_after"]["id"]
    assert [e["action"] for e in audit(tid, "rules")] == ["rule.apply_recommendation"] * 2
    text_out = cli("apply-recommendation", "-t", slug, "--milestone", "label_created",
                   "--top", "2", "--no-keep-inapp")
    assert "sms: 50% (38-62) clicked of 60 tracked" in text_out


def test_a_region_gets_its_own_rule_from_its_own_evidence(cli: Any) -> None:
    tid, slug, _ = make_tenant()
    seed(tid, "in_transit", "email", 40, 20, region="EU-DE")
    seed(tid, "in_transit", "sms", 40, 4, region="EU-DE")
    seed(tid, "in_transit", "sms", 40, 30, region="US")
    seed(tid, "in_transit", "email", 40, 2, region="US")
    eu = cli("apply-recommendation", "-t", slug, "--milestone", "in_transit", "--region", "EU",
             "--top", "1", "--no-keep-inapp", "--json")
    assert (eu["channels"], eu["rule_after"]["region"]) == (["email"], "EU")


def test_too_little_evidence_changes_nothing_and_says_why(cli: Any) -> None:
    tid, slug, _ = make_tenant()
    seed(tid, "refund_processed", "email", 10, 5)
    out = cli("apply-recommendation", "-t", slug, "--milestone", "refund_processed", ok=False)
    assert "enough tracked notifications" in out and "email 10" in out
    assert "no return_approved notifications" in cli(
        "apply-recommendation", "-t", slug, "--milestone", "return_approved", ok=False)
    assert audit(tid, "rules") == []


def test_the_analysis_views_run_on_an_empty_and_a_seeded_tenant(cli: Any) -> None:
    tid, slug, _ = make_tenant()
    empty = cli("effectiveness", "-t", slug, "--json")
    assert empty["rated_returns"] == 0 and empty["groups"] == []
    assert "no rated returns yet" in cli("effectiveness", "-t", slug)
    seed(tid, "label_created", "sms", 5, 1)
    timing = cli("timing", "-t", slug, "--json")
    assert timing[0]["n"] == 5
    assert timing[0]["source_lag_s"]["p50"] == pytest.approx(60, abs=1)
    assert timing[0]["pipeline_s"]["p50"] == pytest.approx(540, abs=1)
    assert "upstream vs pipeline" in cli("timing", "-t", slug)
    assert "label_created" in cli("channels", "-t", slug)
    assert "--by" in cli("effectiveness", "--by", "weekday", ok=False)
