"""Rich tables for `stats` and the demo summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from return_notify.storage.models import ALL_STATES


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:,.0f} ms"


def stats_tables(data: dict[str, Any], extra: dict[str, str] | None = None) -> list[Table]:
    ev = data["events"]
    t1 = Table("events", "count", title="Events")
    for label, key in (("accepted", "accepted"), ("notified", "notified"),
                       ("stale, not notified", "stale"), ("repeat, not notified", "repeat"),
                       ("no reachable channel", "no_channel"), ("rejected (invalid)", "rejected")):
        t1.add_row(label, f"{ev[key]:,}")
    for k, v in (extra or {}).items():
        t1.add_row(k, v)
    by_channel = data["deliveries"]["by_channel"]
    states = [s for s in ALL_STATES if any(s in c for c in by_channel.values())]
    t2 = Table("channel", *states, "total", title="Notifications by channel and state")
    for ch, counts in sorted(by_channel.items()):
        t2.add_row(ch, *[f"{counts.get(s, 0):,}" for s in states], f"{sum(counts.values()):,}")
    lat = data["latency_s"]
    t3 = Table("occurred_at → sent", "value", title="Latency")
    t3.add_row("p50", _ms(lat["occurred_to_sent_p50"]))
    t3.add_row("p95", _ms(lat["occurred_to_sent_p95"]))
    t3.add_row("p99", _ms(lat["occurred_to_sent_p99"]))
    t3.add_row("samples", f"{lat['samples']:,}")
    return [t1, t2, t3]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f} %"


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1000:,.0f} ms" if v < 10 else f"{v:,.1f} s" if v < 600 else f"{v / 60:,.1f} min"


def kpi_tables(k: dict[str, Any]) -> list[Table]:
    """The business KPIs (``kpis.compute_kpis``) as rich tables."""
    tables: list[Table] = []
    succ = Table("by", "value", "settled", "sent", "delivered", "failed", "dead", "not sent",
                 "in flight", "success rate", title="Delivery success")
    for dim, label in (("by_channel", "channel"), ("by_provider", "provider"),
                       ("by_tenant", "tenant"), ("by_region", "region")):
        for r in k["success"][dim]:
            succ.add_row(label, str(r["key"]), f"{r['sent'] + r['failed'] + r['dead']:,}",
                         f"{r['sent']:,}", f"{r['delivered']:,}", f"{r['failed']:,}",
                         f"{r['dead']:,}", f"{r['not_sent']:,}", f"{r['in_flight']:,}",
                         _pct(r["success_rate"]))
        succ.add_section()
    tables.append(succ)
    lat = Table("channel", "→ sent avg", "p50", "p95", "n", "→ delivered avg", "p50", "p95",
                "n", title="Time from occurred_at to sent / delivered")
    rows = [("all", k["latency_s"]["all"]), *sorted(k["latency_s"]["by_channel"].items())]
    for name, v in rows:
        s, d = v["to_sent"], v["to_delivered"]
        lat.add_row(name, _secs(s["avg"]), _secs(s["p50"]), _secs(s["p95"]), f"{s['n']:,}",
                    _secs(d["avg"]), _secs(d["p50"]), _secs(d["p95"]), f"{d['n']:,}")
    tables.append(lat)
    comp = k["completion"]
    ct = Table(comp["period"], "initiated", "completed", "rejected", "cancelled",
               "completion rate", title="Return completion (cohort by initiation)")
    for p in [*comp["periods"], {**comp["total"], "period": "total"}]:
        ct.add_row(p["period"], f"{p['initiated']:,}", f"{p['completed']:,}",
                   f"{p['rejected']:,}", f"{p['cancelled']:,}", _pct(p["rate"]))
    tables.append(ct)
    fn = Table("milestone", "returns reaching it", "share", title="Return funnel")
    for f in k["funnel"]:
        fn.add_row(f["milestone"], f"{f['returns']:,}", _pct(f["share"]))
    tables.append(fn)
    en = Table("milestone", "channel", "sent", "delivered", "undelivered", "bounced", "read",
               "delivered %", "undelivered %", "read %", title="Engagement")
    for e in k["engagement"]:
        en.add_row(e["milestone"], e["channel"], f"{e['sent']:,}", f"{e['delivered']:,}",
                   f"{e['undelivered']:,}", f"{e['bounced']:,}", f"{e['read']:,}",
                   _pct(e["delivered_rate"]), _pct(e["undelivered_rate"]), _pct(e["read_rate"]))
    tables.append(en)
    load = k["load"]
    lt = Table("load (events received, UTC)", "value", title="Load pattern")
    busiest = sorted(range(24), key=lambda h: -load["by_hour_utc"][h])[:3]
    lt.add_row("events", f"{load['events']:,}")
    lt.add_row("busiest hours of day",
               ", ".join(f"{h:02d}:00 ({load['by_hour_utc'][h]:,})" for h in busiest
                         if load["by_hour_utc"][h]) or "-")
    lt.add_row("by weekday", "  ".join(f"{d} {n:,}" for d, n in
                                       zip(load["weekdays"], load["by_weekday"], strict=True)))
    for key in ("peak_hour", "peak_minute"):
        p = load[key]
        lt.add_row(key.replace("_", " "), f"{p['events']:,} events at {p['at'][:16]}" if p else "-")
    tables.append(lt)
    return tables


def _ci(m: dict[str, Any], pct: bool = False) -> str:
    """An interval as ``value (low-high)``: a mean, or a share in % (``pct``)."""
    if m is None or m["value"] is None:
        return "-"
    f = (lambda v: f"{v * 100:.0f}%") if pct else (lambda v: f"{v:.2f}")
    return f(m["value"]) if m["low"] is None else f"{f(m['value'])} ({f(m['low'])}-{f(m['high'])})"


def _dur(v: float | None) -> str:
    """A duration in its own unit, short (the time split's columns)."""
    if v is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v * 1000:.0f} ms"


def insight_tables(ins: dict[str, Any] | None) -> list[Table]:
    """The insights (``insight_summary.insights_summary``) as compact rich tables."""
    if not ins:
        return []
    tables: list[Table] = []
    eff = ins.get("effectiveness")
    if eff is not None:
        group = eff["groups"][0] if eff["groups"] else None
        for key, label, title in (("by_time_to_update", "band", "time to status update"),
                                  ("by_updates", "updates", "number of updates")):
            t = Table(label, "rated", "mean score (95% CI)", "satisfied 4-5 (95% CI)",
                      title=f"Satisfaction by {title} ({eff['rated_returns']:,} rated)")
            for b in group[key] if group else []:
                t.add_row(str(b[label]), f"{b['n']:,}", _ci(b["mean_score"]),
                          _ci(b["satisfied_share"], pct=True))
            tables.append(t)
    pref = ins.get("channel_preference")
    if pref is not None:
        t = Table("milestone", "channel", "sent", "tracked", "opened", "clicked", "read",
                  title="Channel preference (rates, 95% CI)")
        for r in pref["channels"]:
            t.add_row(r["milestone"], r["channel"], f"{r['sent']:,}", f"{r['tracked']:,}",
                      _ci(r["open_rate"], True), _ci(r["click_rate"], True),
                      _ci(r["read_rate"], True))
        tables.append(t)
        rec = Table("milestone", "recommended order", "evidence (clicked / tracked)",
                    title="Recommended channel order (by click rate)")
        for r in pref["recommendations"]:
            few = ", ".join(f"{x['channel']} {x['tracked']}" for x in r["insufficient"])
            evidence = [f"{e['channel']} {e['clicked']:,}/{e['tracked']:,}"
                        for e in r["evidence"]] + ([f"too few: {few}"] if few else [])
            rec.add_row(r["milestone"], " > ".join(r["order"]) or "-", ", ".join(evidence))
        tables.append(rec)
    split = ins.get("time_split")
    if split is not None:
        t = Table("source", "channel", "n", "lag p50", "p95", "ours p50", "p95", "upstream",
                  title="Where the time goes: source lag vs pipeline (ours)")
        for r in split:
            t.add_row("all" if r["source"] is None else (r["source"] or "(none)"),
                      r["channel"] or "all", f"{r['n']:,}", _dur(r["source_lag_s"]["p50"]),
                      _dur(r["source_lag_s"]["p95"]), _dur(r["pipeline_s"]["p50"]),
                      _dur(r["pipeline_s"]["p95"]), _pct(r["upstream_share"]))
        tables.append(t)
    return tables
