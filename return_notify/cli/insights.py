"""``insights``: a tenant's tracking and survey switches, the analysis (effectiveness,
channels, where the time goes) and applying a channel recommendation as a rule.

``register(app)`` adds the group. Changes are audited as ``audit_actor()`` names the
operator: ``insights.update`` for the switches, ``rule.apply_recommendation`` for a rule.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from return_notify.cli.common import (
    CREATE_TENANT_HINT,
    JsonOpt,
    audit_actor,
    console,
    fail,
    parse_since,
    print_json,
    require_database,
    tenant_id,
)

insights_app = typer.Typer(
    help="Engagement tracking, the satisfaction survey and what they show: do timely updates "
    "raise satisfaction, which channel works at which stage, where the time goes.",
    no_args_is_help=True)

TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant slug.")]
SinceOpt = Annotated[str | None, typer.Option(help="Only since: 15m, 24h, 7d or an ISO time.")]
RegionOpt = Annotated[str | None, typer.Option(help="Region, e.g. EU (covers EU-DE).")]
CategoryOpt = Annotated[str | None, typer.Option(help="Product category, e.g. apparel.")]
MinSampleOpt = Annotated[int, typer.Option(
    min=1, help="Tracked notifications a channel needs before it is ranked.")]


def register(app: typer.Typer) -> None:
    """Add ``insights`` to the ``return-notify`` app."""
    app.add_typer(insights_app, name="insights")


def _session() -> Any:
    from return_notify.storage.db import session_scope

    require_database()
    return session_scope()


def _filter(tenant: str | None, since: str | None, region: str | None = None,
            category: str | None = None) -> Any:
    from return_notify.reporting.insights import InsightFilter

    return InsightFilter(tenants=(tenant,) if tenant else (), since=parse_since(since),
                         regions=(region,) if region else (),
                         categories=(category,) if category else ())


def _pct(rate: dict[str, Any] | None) -> str:
    if not rate or rate["value"] is None:
        return "-"
    return f"{rate['value'] * 100:.0f}% ({rate['low'] * 100:.0f}-{rate['high'] * 100:.0f})"


def _mean(m: dict[str, Any]) -> str:
    if m["value"] is None:
        return "-"
    if m["low"] is None:
        return f"{m['value']:.2f}"
    return f"{m['value']:.2f} ({m['low']:.2f}-{m['high']:.2f})"


# ------------------------------------------------------------------ switches ------------

@insights_app.command("settings")
def settings(
    tenant: TenantOpt,
    tracking: Annotated[bool | None, typer.Option(
        "--tracking/--no-tracking", help="Record opens and clicks (tracked SMS and in-app "
        "links, SendGrid's events).")] = None,
    survey: Annotated[bool | None, typer.Option(
        "--survey/--no-survey", help="Ask for a 1-5 rating in the final messages.")] = None,
    survey_milestones: Annotated[str | None, typer.Option(
        help="Which final messages ask: return_completed and/or refund_processed.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show or change (audited) a tenant's tracking and survey switches.

    Both are off until switched on, and put links in messages only with RSN_LINK_SECRET
    set. Tracking off: nothing is recorded, also for messages sent while it was on."""
    from pydantic import ValidationError

    from return_notify.config.settings import get_settings
    from return_notify.templating.link_settings import (
        InsightsSettings,
        get_insights,
        save_insights,
    )

    with _session() as s:
        tid = tenant_id(s, tenant, CREATE_TENANT_HINT)
        current = get_insights(s, tid)
        changes = {k: v for k, v in (("tracking", tracking), ("survey", survey),
                                     ("survey_milestones", survey_milestones)) if v is not None}
        if changes:
            try:
                new = InsightsSettings(**{**current.model_dump(), **changes})
            except ValidationError as exc:
                fail("; ".join(e["msg"] for e in exc.errors()))
            current = save_insights(s, tid, new, audit_actor())
    out = {"tenant": tenant, **current.model_dump(mode="json"),
           "links_configured": get_settings().link_secret is not None}
    if json_out:
        print_json(out)
        return
    console.print(f"[bold]{tenant}[/]: tracking {'on' if current.tracking else 'off'}, "
                  f"survey {'on' if current.survey else 'off'} "
                  f"({', '.join(current.survey_milestones)})")
    if not out["links_configured"] and (current.tracking or current.survey):
        console.print("[yellow]RSN_LINK_SECRET is not set: messages carry no tracked or "
                      "rating links until it is[/]")


# ------------------------------------------------------------------ analysis ------------

@insights_app.command("effectiveness")
def effectiveness(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant slug.")] = None,
    since: SinceOpt = None, region: RegionOpt = None, category: CategoryOpt = None,
    by: Annotated[str | None, typer.Option(help="Split by tenant, region or category.")] = None,
    worst: Annotated[bool, typer.Option("--worst", help="Band a return by its slowest update, "
                                        "not its median one.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Satisfaction by time to status update and by number of updates.

    Mean score and share satisfied (4-5) with 95 % intervals, and Spearman's rho between a
    return's time to status update and its score."""
    from return_notify.reporting.insights import effectiveness as compute

    if by not in (None, "tenant", "region", "category"):
        fail("--by: tenant, region or category")
    with _session() as s:
        result = compute(s, _filter(tenant, since, region, category), by=by,  # type: ignore[arg-type]
                         measure="worst" if worst else "median")
    if json_out:
        print_json(result)
        return
    if not result["rated_returns"]:
        console.print("no rated returns yet (switch the survey on: `return-notify insights "
                      "settings --tenant T --survey`)")
        return
    for g in result["groups"]:
        table = Table(title="satisfaction by time to status update"
                      + (f" - {by} {g['key']}" if by else ""), box=box.SIMPLE_HEAD)
        for col in ("time to update", "rated", "mean score (95% CI)", "satisfied 4-5 (95% CI)"):
            table.add_column(col, justify="left" if col == "time to update" else "right")
        for b in g["by_time_to_update"]:
            table.add_row(b["band"], str(b["n"]), _mean(b["mean_score"]),
                          _pct(b["satisfied_share"]))
        console.print(table)
        rho = g["time_vs_score"]["spearman_rho"]
        if rho["value"] is not None:
            console.print(f"  Spearman rho (time vs score): {_mean(rho)}, n = {rho['n']}")


@insights_app.command("channels")
def channels(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant slug.")] = None,
    since: SinceOpt = None, region: RegionOpt = None, category: CategoryOpt = None,
    min_sample: MinSampleOpt = 30, json_out: JsonOpt = False,
) -> None:
    """Open, click and read rates per milestone and channel, and the best channels.

    Each milestone's channels are ranked by click rate (the low end of its 95 % interval),
    once they have --min-sample tracked notifications."""
    from return_notify.reporting.insights import channel_preference, recommend

    flt = _filter(tenant, since, region, category)
    with _session() as s:
        rows = channel_preference(s, flt)
        recs = recommend(s, flt, min_sample)
    if json_out:
        print_json({"channels": rows, "recommendations": recs})
        return
    table = Table(title="engagement per milestone and channel", box=box.SIMPLE_HEAD)
    for col in ("milestone", "channel", "sent", "tracked", "opened", "clicked", "read"):
        table.add_column(col, justify="left" if col in ("milestone", "channel") else "right")
    for r in rows:
        table.add_row(r["milestone"], r["channel"], str(r["sent"]), str(r["tracked"]),
                      _pct(r["open_rate"]), _pct(r["click_rate"]), _pct(r["read_rate"]))
    console.print(table)
    for rec in recs:
        order = " > ".join(rec["order"]) or "-"
        few = ", ".join(f"{x['channel']} ({x['tracked']})" for x in rec["insufficient"])
        console.print(f"  {rec['milestone']}: {order}"
                      + (" (clear winner)" if rec["clear_winner"] else "")
                      + (f"; too few to rank: {few}" if few else ""))


@insights_app.command("timing")
def timing(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="Tenant slug.")] = None,
    since: SinceOpt = None, json_out: JsonOpt = False,
) -> None:
    """Where the time goes: the source's lag and the pipeline's own, per source and channel.

    Source lag: occurred_at → received_at (the WMS, ERP or carrier); pipeline:
    received_at → sent (ours)."""
    from return_notify.reporting.timing import time_split

    with _session() as s:
        rows = time_split(s, _filter(tenant, since))
    if json_out:
        print_json(rows)
        return
    table = Table(title="time to status update: upstream vs pipeline (seconds)",
                  box=box.SIMPLE_HEAD)
    for col in ("source", "channel", "n", "source lag p50", "p95", "pipeline p50", "p95",
                "upstream share"):
        table.add_column(col, justify="left" if col in ("source", "channel") else "right")
    def num(v: float | None, digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f}"  # None: nothing sent in the window

    for r in rows:
        table.add_row("all" if r["source"] is None else (r["source"] or "(none)"),
                      r["channel"] or "all", str(r["n"]), num(r["source_lag_s"]["p50"], 1),
                      num(r["source_lag_s"]["p95"], 1), num(r["pipeline_s"]["p50"], 2),
                      num(r["pipeline_s"]["p95"], 2),
                      "-" if r["upstream_share"] is None else f"{r['upstream_share'] * 100:.1f}%")
    console.print(table)


# ------------------------------------------------------------------ apply ---------------

@insights_app.command("apply-recommendation")
def apply_recommendation(
    tenant: TenantOpt,
    milestone: Annotated[str, typer.Option(help="e.g. label_created")],
    region: RegionOpt = None, category: CategoryOpt = None, since: SinceOpt = None,
    top: Annotated[int, typer.Option(min=1, max=3, help="How many of the best channels.")] = 2,
    keep_inapp: Annotated[bool, typer.Option(
        "--keep-inapp/--no-keep-inapp", help="Keep in-app too (every customer has it).")]
    = True,
    min_sample: MinSampleOpt = 30,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the change only.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Make a milestone's recommended channels its rule, in one command.

    The recommendation of that region and category (from their own evidence) sets the
    channels of the rule of that exact scope, updated or created; audited as
    rule.apply_recommendation; undo with `rules update`."""
    from return_notify.core.regions import normalize_category, normalize_region
    from return_notify.reporting.insights import channels_to_apply, recommend
    from return_notify.rules.store import (
        RuleError,
        RuleSpec,
        create_rule,
        list_rules,
        rule_dict,
        update_rule,
    )

    try:
        reg, cat = normalize_region(region), normalize_category(category)
    except ValueError as exc:
        fail(str(exc))
    with _session() as s:
        tid = tenant_id(s, tenant, CREATE_TENANT_HINT)
        recs = {r["milestone"]: r for r in recommend(
            s, _filter(tenant, since, reg, cat), min_sample)}
        rec = recs.get(milestone)
        if rec is None:
            fail(f"no {milestone} notifications sent for {tenant}"
                 + (f" in {reg or '*'}/{cat or '*'}" if reg or cat else "") + " yet")
        try:
            chosen = channels_to_apply(rec["order"], top, keep_inapp)
        except ValueError as exc:
            few = ", ".join(f"{x['channel']} {x['tracked']}" for x in rec["insufficient"])
            fail(f"{exc} (need {min_sample} each; have {few}; lower --min-sample or wait)")
        existing = next((r for r in list_rules(s, tid, milestone)
                         if r.region == reg and r.product_category == cat), None)
        before = rule_dict(existing) if existing is not None else None
        after: dict[str, Any] | None = None
        if not dry_run:
            try:
                if existing is not None:
                    after = rule_dict(update_rule(s, tid, existing.id, {"channels": chosen},
                                                  audit_actor(),
                                                  action="rule.apply_recommendation"))
                else:
                    spec = RuleSpec.build(milestone, chosen, reg, cat)
                    after = rule_dict(create_rule(s, tid, spec, audit_actor(),
                                                  action="rule.apply_recommendation"))
            except (RuleError, ValueError) as exc:
                fail(str(exc))
    out = {"tenant": tenant, "milestone": milestone, "region": reg, "category": cat,
           "channels": chosen, "dry_run": dry_run, "recommendation": rec,
           "rule_before": before, "rule_after": after}
    if json_out:
        print_json(out)
        return
    was = ",".join(before["channels"]) if before else "the default rule"
    verb = "would set" if dry_run else "set"
    console.print(f"{tenant} {milestone} ({reg or '*'}/{cat or '*'}): {verb} channels "
                  f"{','.join(chosen)} (was {was})")
    for ev in rec["evidence"]:
        console.print(f"  {ev['channel']}: {_pct(ev['click_rate'])} clicked of "
                      f"{ev['tracked']} tracked")
