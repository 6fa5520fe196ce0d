"""The numbers: ``stats`` (counts, latencies and KPIs on the terminal) and ``report`` (an HTML file).

Both are top-level commands (``main`` lists them); the reporting layer is imported only
when one runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from return_notify.cli.common import JsonOpt, console, fail, parse_since, print_json, require_urls


def stats(
    since: Annotated[str | None, typer.Option(help="e.g. 15m, 24h, 7d or an ISO time.")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    region: Annotated[str | None, typer.Option(
        help="KPIs of returns in this region and its sub-regions only, e.g. EU.")] = None,
    category: Annotated[str | None, typer.Option(
        help="KPIs of returns of this product category only.")] = None,
    insights: Annotated[str, typer.Option(
        help="Which insights to add: all, none, or any of effectiveness, channels, timing "
        "(comma-separated). Each reads a bounded set: the window's latest "
        "RSN_STATS_INSIGHT_RATINGS ratings / RSN_STATS_INSIGHT_NOTIFICATIONS notifications.")]
    = "all",
    json_out: JsonOpt = False,
) -> None:
    """Counts by channel and state, latencies, the business KPIs (success rate by
    channel/provider/tenant/region, completion rate, funnel, engagement, load pattern) and
    the insights (satisfaction by time to status update and by number of updates, channel
    preference with the recommended order, source lag vs pipeline). --region/--category
    narrow the KPIs and the insights as GET /v1/stats does."""
    require_urls()
    from return_notify.core.regions import normalize_category, normalize_region
    from return_notify.reporting.insight_summary import insights_summary, parse_parts
    from return_notify.reporting.kpis import ReturnScope
    from return_notify.reporting.reads import compute_kpis, pipeline_stats
    from return_notify.storage.db import session_scope

    since_at = parse_since(since)
    try:
        reg, cat = normalize_region(region), normalize_category(category)
        parts = parse_parts(insights)
    except ValueError as exc:
        fail(str(exc))
    scope = ReturnScope((reg,) if reg else (), (cat,) if cat else ())
    with session_scope() as s:
        data = pipeline_stats(s, since=since_at, tenant=tenant)
        data["kpis"] = compute_kpis(s, since=since_at, tenant=tenant, scope=scope or None)
        if parts:
            data["insights"] = insights_summary(s, since=since_at, tenant=tenant, scope=scope,
                                                parts=parts)
    if json_out:
        print_json(data)
        return
    from return_notify.reporting.tables import insight_tables, kpi_tables, stats_tables

    for t in [*stats_tables(data), *kpi_tables(data["kpis"]),
              *insight_tables(data.get("insights"))]:
        console.print(t)


def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path(
        "report.html"),
    since: Annotated[str | None, typer.Option(help="e.g. 24h, 7d or an ISO time.")] = None,
    tenant: Annotated[str | None, typer.Option(help="One tenant (slug).")] = None,
    period: Annotated[str, typer.Option(help="Completion-rate period: day, week or month.")] = "week",
    title: Annotated[str, typer.Option(help="Heading of the report.")] = "return-notify report",
    insights: Annotated[str, typer.Option(
        help="Insight sections: all, none, or any of effectiveness, channels, timing "
        "(comma-separated), as `stats --insights`.")] = "all",
) -> None:
    """Write one self-contained HTML report (no network needed to view it): throughput over
    time, latency distribution, success by channel, the return funnel, load, KPI tables,
    and the insights: satisfaction by time to status update (chart with 95 % intervals) and
    by number of updates, channel preference with the recommended order, source lag vs
    pipeline."""
    from return_notify.reporting.html import render_report
    from return_notify.reporting.insight_summary import insights_summary, parse_parts
    from return_notify.reporting.kpis import PERIODS
    from return_notify.reporting.reads import compute_kpis
    from return_notify.storage.db import session_scope

    require_urls()
    if period not in PERIODS:
        fail(f"--period must be one of {', '.join(PERIODS)}")
    try:
        parts = parse_parts(insights)
    except ValueError as exc:
        fail(str(exc))
    since_at = parse_since(since)
    with session_scope() as s:
        k = compute_kpis(s, since=since_at, tenant=tenant, period=period)
        ins = insights_summary(s, since=since_at, tenant=tenant, parts=parts) if parts else None
    out.write_text(render_report(k, title=title, insights=ins), encoding="utf-8")
    console.print(f"report written to [bold]{out}[/] ({out.stat().st_size / 1024:,.0f} KiB)")
