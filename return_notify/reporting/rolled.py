"""``compute_kpis`` and ``pipeline_stats`` from the aggregates: the same dictionaries as
``kpis.compute_kpis`` and ``throughput.pipeline_stats`` give from the raw rows; with a
region/category scope, from the scoped aggregates (``rollup_scoped.py``, ``scoped.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.reporting import aggregates as agg
from return_notify.reporting import facts, scoped
from return_notify.reporting.cohorts import completion
from return_notify.reporting.kpis import ReturnScope, _iso
from return_notify.reporting.window import Window

_DISPOSITIONS = {d: f"n_{d}" for d in facts.DISPOSITIONS}


def compute_kpis(session: Session, win: Window, tid: int | None, tenant: str | None,
                 period: str, scope: ReturnScope | None = None) -> dict[str, Any]:
    names = agg.tenant_names(session)
    deliveries = agg.load_deliveries(session, win, tid, scope)
    lat = agg.load_latency(session, win, tid, scope)
    hours = (scoped.load_event_hours(session, win, tid, scope) if scope
             else agg.load_event_hours(session, win, tid))
    comp = completion(session, win, tid, period, scope)
    filters: dict[str, Any] = {"since": _iso(win.since), "tenant": tenant}
    if scope:
        filters.update(regions=list(scope.regions), categories=list(scope.categories))
    return {
        "filters": filters,
        "success": agg.success(deliveries, names),
        "latency_s": agg.latency(lat),
        "latency_histogram": agg.latency_histogram(lat),
        "completion": {k: comp[k] for k in ("period", "periods", "total")},
        "funnel": comp["funnel"],
        "engagement": agg.engagement(deliveries),
        "load": agg.load(hours),
        "throughput": throughput(session, win, tid, hours, deliveries, scope=scope),
    }


def throughput(session: Session, win: Window, tid: int | None, hours: list[Any],
               deliveries: list[Any], max_points: int = 300,
               scope: ReturnScope | None = None) -> dict[str, Any]:
    """Events received and notifications sent per time bucket (second … day, by span)."""
    firsts = [r["min_at"] for r in hours] + [r["min_sent_at"] for r in deliveries
                                             if r["min_sent_at"] is not None]
    lasts = [r["max_at"] for r in hours] + [r["max_sent_at"] for r in deliveries
                                            if r["max_sent_at"] is not None]
    if not firsts:
        return {"bucket": None, "bucket_s": None, "points": []}
    first, last = min(firsts), max(lasts)
    unit, size = agg.unit_for(first, last, max_points)
    events: dict[datetime, int] = {}
    sent: dict[datetime, int] = {}
    if unit in ("hour", "day"):
        for r in hours:
            b = _trunc(r["bucket"], unit)
            events[b] = events.get(b, 0) + int(r["n"])
        for b, n in agg.load_sent_hours(session, win, tid, unit, scope):
            sent[b] = sent.get(b, 0) + int(n)
    else:  # the whole span is under five hours: count its raw rows
        events, sent = _fine(session, win, tid, unit, first, scope)
    points = sorted(set(events) | set(sent))
    return {"bucket": unit, "bucket_s": size,
            "points": [{"t": _iso(b), "events": events.get(b, 0), "sent": sent.get(b, 0)}
                       for b in points]}


def _trunc(at: datetime, unit: str) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0) if unit == "hour" else \
        at.replace(hour=0, minute=0, second=0, microsecond=0)


def _fine(session: Session, win: Window, tid: int | None, unit: str, first: datetime,
          scope: ReturnScope | None = None) -> tuple[dict[datetime, int], dict[datetime, int]]:
    """Second or minute points of a span under five hours, from its raw rows: the window's
    events are those received from ``first`` on, its sends those of deliveries created from
    ``since`` (without one, from ``first``: a delivery is never older than its event)."""
    p: dict[str, Any] = {"unit": unit, "first": first, "from": win.since or first, "tid": tid}
    only = "AND {a}.tenant_id = :tid" if tid is not None else ""
    join = ""
    if scope:
        join = "JOIN returns r ON r.id = {a}.return_pk AND " + facts.scope_condition(
            "r.region", "r.product_category", scope, p)
    rows: dict[str, dict[datetime, int]] = {"e": {}, "d": {}}
    for kind, b, n in session.execute(text(f"""
        SELECT 'e', date_trunc(:unit, e.received_at), count(*) FROM events e
        {join.format(a='e')}
        WHERE e.received_at >= :first {only.format(a='e')} GROUP BY 2
        UNION ALL
        SELECT 'd', date_trunc(:unit, d.sent_at), count(*) FROM deliveries d
        {join.format(a='d')}
        WHERE d.created_at >= :from AND d.sent_at IS NOT NULL {only.format(a='d')} GROUP BY 2
    """), p):
        rows[kind][b] = int(n)
    return rows["e"], rows["d"]


def pipeline_stats(session: Session, win: Window, tid: int | None, tenant: str | None
                   ) -> dict[str, Any]:
    hours = agg.load_event_hours(session, win, tid)
    deliveries = agg.load_deliveries(session, win, tid)
    lat = agg.latency_summary(agg.load_latency(session, win, tid), (0.5, 0.95, 0.99)).get("all", {})
    events = {d: sum(int(r[col]) for r in hours) for d, col in _DISPOSITIONS.items()}
    by_channel: dict[str, dict[str, int]] = {}
    for r in sorted(deliveries, key=lambda r: (r["channel"], r["state"])):
        states = by_channel.setdefault(r["channel"], {})
        states[r["state"]] = states.get(r["state"], 0) + int(r["n"])
    total = sum(n for st in by_channel.values() for n in st.values())
    sent = sum(st.get("sent", 0) + st.get("delivered", 0) for st in by_channel.values())
    s, d = lat.get("s", {}), lat.get("d", {})
    firsts = [r["min_sent_at"] for r in deliveries if r["min_sent_at"] is not None]
    lasts = [r["max_sent_at"] for r in deliveries if r["max_sent_at"] is not None]
    return {
        "events": {"accepted": sum(int(r["n"]) for r in hours), "notified": events["notified"],
                   "stale": events["stale"], "repeat": events["repeat"],
                   "no_channel": events["no_channel"],
                   "rejected": agg.rejected_count(session, win, tenant)},
        "deliveries": {"total": total, "sent": sent, "by_channel": by_channel},
        "latency_s": {
            "occurred_to_sent_p50": s.get("p50"), "occurred_to_sent_p95": s.get("p95"),
            "occurred_to_sent_p99": s.get("p99"), "samples": s.get("n", 0),
            "occurred_to_sent_avg": s.get("avg"),
            "occurred_to_delivered_avg": d.get("avg"),
            "occurred_to_delivered_p50": d.get("p50"),
            "occurred_to_delivered_p95": d.get("p95"), "delivered_samples": d.get("n", 0),
        },
        "first_sent_at": min(firsts).isoformat() if firsts else None,
        "last_sent_at": max(lasts).isoformat() if lasts else None,
    }
