"""The KPIs of ``kpis.compute_kpis`` and ``throughput.pipeline_stats`` read from the
aggregates (``rollup.py``) plus the raw rows they do not cover yet (``window.py``): one
grouped read per aggregate table, the KPIs computed from those few thousand rows in Python.

Every count, rate, average, histogram bucket, peak, throughput point and cohort is the
number the raw queries give on the same rows. Percentiles are interpolated in latency
buckets of two significant digits (``rsn_latency_bucket``): within 5 % of the exact value,
usually much closer. Rows a rollup has not re-read since they changed (a webhook's news
on an hour already rolled up) count as they were at that rollup: beat runs it every
``RSN_STATS_ROLLUP_INTERVAL_S``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.lifecycle import MAIN_LINE
from return_notify.reporting import facts
from return_notify.reporting.kpis import LATENCY_EDGES_S, ReturnScope, _f, _iso, _rate
from return_notify.reporting.window import Window

_BUCKETS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))
SENT, DELIVERED = ("sent", "delivered"), "delivered"
NOT_SENT, IN_FLIGHT = ("skipped", "suppressed"), ("pending", "sending", "retrying", "scheduled")


def tenant_names(session: Session) -> dict[int, str]:
    return {int(i): str(s) for i, s in session.execute(text("SELECT id, slug FROM tenants"))}


def _memo(session: Session, key: tuple[Any, ...], load: Any) -> Any:
    """``load()`` once per session: ``stats --json`` reads the same window twice
    (``pipeline_stats`` and ``compute_kpis``) in one REPEATABLE READ transaction."""
    cache = session.info.setdefault("rsn_facts", {})
    if key not in cache:
        cache[key] = load()
    return cache[key]


def _tenant_filter(alias: str, tid: int | None, p: dict[str, Any]) -> str:
    if tid is None:
        return "TRUE"
    p["tid"] = tid
    return f"{alias}tenant_id = :tid"


# ------------------------------------------------------------------ loaders -----------

def _scoped(table: str, scope: ReturnScope | None, p: dict[str, Any]) -> tuple[str, str, str]:
    """The aggregate table to read for ``scope`` (its ``stats_scope_`` twin, by region and
    category), the condition on its rows and the one on the raw rows' return ``r``."""
    if not scope:
        return table, "TRUE", "TRUE"
    return (table.replace("stats_", "stats_scope_", 1),
            facts.scope_condition("region", "category", scope, p),
            facts.scope_condition("r.region", "r.product_category", scope, p))


def load_deliveries(session: Session, win: Window, tid: int | None,
                    scope: ReturnScope | None = None) -> list[Any]:
    return _memo(session, ("load_deliveries", win, tid, scope),
                 lambda: _load_deliveries(session, win, tid, scope))


def _load_deliveries(session: Session, win: Window, tid: int | None,
                     scope: ReturnScope | None) -> list[Any]:
    """Delivery facts over the window, summed per (tenant, channel, provider, region,
    milestone, state)."""
    p: dict[str, Any] = {}
    table, cond, raw_cond = _scoped("stats_deliveries", scope, p)
    raw = facts.delivery_facts("deliveries d", f"{win.raw('d.created_at', p)} AND "
                                               f"{_tenant_filter('d.', tid, p)} AND {raw_cond}",
                               "NULL")
    keys = "tenant_id, channel, provider, region, milestone, state"
    return list(session.execute(text(f"""
        SELECT {keys}, sum(n) AS n, sum(n_sent) AS n_sent, sum(n_delivered) AS n_delivered,
               sum(n_bounced) AS n_bounced, sum(n_read) AS n_read,
               min(min_sent_at) AS min_sent_at, max(max_sent_at) AS max_sent_at
        FROM (SELECT {keys}, n, n_sent, n_delivered, n_bounced, n_read, min_sent_at,
                     max_sent_at
              FROM {table} WHERE {win.grained(p)} AND {_tenant_filter('', tid, p)} AND {cond}
              UNION ALL
              SELECT {keys}, n, n_sent, n_delivered, n_bounced, n_read, min_sent_at,
                     max_sent_at FROM ({raw}) f) u
        GROUP BY {keys}"""), p).mappings())


def load_latency(session: Session, win: Window, tid: int | None,
                 scope: ReturnScope | None = None) -> list[Any]:
    return _memo(session, ("load_latency", win, tid, scope),
                 lambda: _load_latency(session, win, tid, scope))


def _load_latency(session: Session, win: Window, tid: int | None,
                  scope: ReturnScope | None) -> list[Any]:
    """Latency histogram rows (channel, kind, lo_ms, hi_ms, n, sum_s) over the window."""
    p: dict[str, Any] = {}
    table, cond, raw_cond = _scoped("stats_latency", scope, p)
    raw = facts.latency_facts("deliveries d", f"{win.raw('d.created_at', p)} AND "
                                              f"{_tenant_filter('d.', tid, p)} AND {raw_cond}",
                              "NULL", scoped=bool(scope))
    return list(session.execute(text(f"""
        SELECT channel, kind, lo_ms, hi_ms, sum(n) AS n, sum(sum_s) AS sum_s
        FROM (SELECT channel, kind, lo_ms, hi_ms, n, sum_s FROM {table}
              WHERE {win.grained(p)} AND {_tenant_filter('', tid, p)} AND {cond}
              UNION ALL
              SELECT channel, kind, lo_ms, hi_ms, n, sum_s FROM ({raw}) f) u
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3"""), p).mappings())


def load_event_hours(session: Session, win: Window, tid: int | None) -> list[Any]:
    return _memo(session, ("load_event_hours", win, tid), lambda: _load_event_hours(session, win, tid))


def _load_event_hours(session: Session, win: Window, tid: int | None) -> list[Any]:
    """One row per hour with events received in the window (for the tenant, or all)."""
    p: dict[str, Any] = {"t": tid or 0}
    raw = facts.event_hour_facts("events e", f"{win.raw('e.received_at', p, grained=False)} "
                                             f"AND {_tenant_filter('e.', tid, p)}")
    cols = ", ".join(facts.EVENT_HOUR_COLUMNS[1:])
    return list(session.execute(text(f"""
        SELECT {cols} FROM stats_event_hours WHERE tenant_id = :t AND {win.hourly(p)}
        UNION ALL
        SELECT {cols} FROM ({raw}) f WHERE f.tenant_id = :t
        ORDER BY bucket"""), p).mappings())


def load_sent_hours(session: Session, win: Window, tid: int | None, unit: str,
                    scope: ReturnScope | None = None) -> list[Any]:
    """Notifications sent per ``unit`` (hour or day) of sent_at, of deliveries created in
    the window."""
    p: dict[str, Any] = {"t": tid or 0, "unit": unit}
    if scope:
        table, cond, raw_cond = _scoped("stats_sent_hours", scope, p)
        raw = facts.scoped_sent_facts(
            "deliveries d", f"{win.raw('d.created_at', p, grained=False)} AND "
                            f"{_tenant_filter('d.', tid, p)} AND {raw_cond}",
            facts.hour_of("d.created_at"))
        return list(session.execute(text(f"""
            SELECT date_trunc(:unit, sent_hour, 'UTC') AS b, sum(n) AS n FROM (
                SELECT sent_hour, n FROM {table}
                WHERE {win.hourly(p)} AND {_tenant_filter('', tid, p)} AND {cond}
                UNION ALL SELECT sent_hour, n FROM ({raw}) f) u
            GROUP BY 1 ORDER BY 1"""), p).all())
    raw = facts.sent_facts("deliveries d", f"{win.raw('d.created_at', p, grained=False)} AND "
                                           f"{_tenant_filter('d.', tid, p)}",
                           facts.hour_of("d.created_at"))
    return list(session.execute(text(f"""
        SELECT date_trunc(:unit, sent_hour, 'UTC') AS b, sum(n) AS n FROM (
            SELECT sent_hour, n FROM stats_sent_hours WHERE tenant_id = :t AND {win.hourly(p)}
            UNION ALL
            SELECT sent_hour, n FROM ({raw}) f WHERE f.tenant_id = :t) u
        GROUP BY 1 ORDER BY 1"""), p).all())


def rejected_count(session: Session, win: Window, tenant: str | None) -> int:
    p: dict[str, Any] = {"tenant": tenant}
    only = "(CAST(:tenant AS text) IS NULL OR {c} = :tenant)"
    raw = facts.rejected_facts("rejected_events x", f"{win.raw('x.received_at', p, False)} "
                                                    f"AND {only.format(c='x.tenant')}")
    return int(session.execute(text(f"""
        SELECT coalesce(sum(n), 0) FROM (
            SELECT n FROM stats_rejected_hours WHERE {win.hourly(p)} AND {only.format(c='tenant')}
            UNION ALL SELECT n FROM ({raw}) f) u"""), p).scalar_one())


# ------------------------------------------------------------------ KPIs --------------

def success(rows: list[Any], names: dict[int, str]) -> dict[str, list[dict[str, Any]]]:
    dims: dict[str, dict[Any, dict[str, int]]] = {d: defaultdict(lambda: defaultdict(int))
                                                 for d in ("by_channel", "by_provider",
                                                           "by_tenant", "by_region")}
    for r in rows:
        n, st = int(r["n"]), r["state"]
        for dim, key in (("by_channel", r["channel"]),
                         ("by_provider", r["provider"] or "(none)"),
                         ("by_tenant", names.get(r["tenant_id"])),
                         ("by_region", r["region"] or "(none)")):
            c = dims[dim][key]
            c["total"] += n
            c["sent"] += n if st in SENT else 0
            c["delivered"] += n if st == DELIVERED else 0
            c["failed"] += n if st == "failed" else 0
            c["dead"] += n if st == "dead" else 0
            c["not_sent"] += n if st in NOT_SENT else 0
            c["in_flight"] += n if st in IN_FLIGHT else 0
    out: dict[str, list[dict[str, Any]]] = {}
    for dim, groups in dims.items():
        items = []
        for key, c in groups.items():
            counts = {k: c[k] for k in ("total", "sent", "delivered", "failed", "dead",
                                        "not_sent", "in_flight")}
            settled = counts["sent"] + counts["failed"] + counts["dead"]
            items.append({"key": key, **counts, "success_rate": _rate(counts["sent"], settled)})
        out[dim] = sorted(items, key=lambda x: str(x["key"]))
    return out


def engagement(rows: list[Any]) -> list[dict[str, Any]]:
    g: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        c = g[(r["milestone"], r["channel"])]
        c["sent"] += int(r["n_sent"])
        c["delivered"] += int(r["n"]) if r["state"] == DELIVERED else 0
        c["undelivered"] += int(r["n_sent"]) if r["state"] == "failed" else 0
        c["bounced"] += int(r["n_bounced"])
        c["read"] += int(r["n_read"])
    order = {m.value: i for i, m in enumerate(MAIN_LINE)}
    out = []
    for (m, ch), c in sorted(g.items(), key=lambda kv: (order.get(kv[0][0], 99), *kv[0])):
        item: dict[str, Any] = {"milestone": m, "channel": ch, "sent": c["sent"],
                                "delivered": c["delivered"], "undelivered": c["undelivered"],
                                "bounced": c["bounced"], "read": c["read"]}
        item["delivered_rate"] = _rate(c["delivered"], c["sent"])
        item["undelivered_rate"] = _rate(c["undelivered"], c["sent"])
        item["read_rate"] = _rate(c["read"], c["sent"]) if ch == "inapp" else None
        out.append(item)
    return out


def percentile(hist: list[tuple[int, int, int]], q: float) -> float | None:
    """``percentile_cont(q)`` in seconds, the values of each [lo, hi) ms bucket taken as
    evenly spread through it."""
    total = sum(n for _, _, n in hist)
    if not total:
        return None
    pos = q * (total - 1)

    def value(k: int) -> float:
        seen = 0
        for lo, hi, n in hist:
            if k < seen + n:
                return lo + (k - seen + 0.5) * (hi - lo) / n
            seen += n
        return float(hist[-1][1])

    k = int(pos)
    v = value(k)
    if pos > k:
        v += (pos - k) * (value(k + 1) - v)
    return v / 1000.0


def latency_summary(rows: list[Any], qs: tuple[float, ...] = (0.5, 0.95)) -> dict[str, Any]:
    """{"all"|channel: {kind: {n, avg, p50, p95[, p99]}}} from histogram rows."""
    counts: dict[tuple[str, str], dict[tuple[int, int], int]] = defaultdict(
        lambda: defaultdict(int))
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in rows:
        for ch in (r["channel"], "all"):
            counts[(ch, r["kind"])][(int(r["lo_ms"]), int(r["hi_ms"]))] += int(r["n"])
            sums[(ch, r["kind"])] += Decimal(r["sum_s"])
    out: dict[str, Any] = defaultdict(dict)
    for (ch, kind), buckets in counts.items():
        h = sorted((lo, hi, n) for (lo, hi), n in buckets.items())
        n = sum(x[2] for x in h)
        out[ch][kind] = {"n": n, "avg": _f(sums[(ch, kind)] / n) if n else None,
                         **{f"p{round(q * 100)}": _f(percentile(h, q)) for q in qs}}
    return out


def latency(rows: list[Any]) -> dict[str, Any]:
    s = latency_summary(rows)
    empty = {"n": 0, "avg": None, "p50": None, "p95": None}

    def shape(ch: str) -> dict[str, Any]:
        return {"to_sent": s[ch].get("s", dict(empty)), "to_delivered": s[ch].get("d", dict(empty))}

    out: dict[str, Any] = {"all": shape("all") if "all" in s else
                           {"to_sent": dict(empty), "to_delivered": dict(empty)},
                           "by_channel": {ch: shape(ch) for ch in sorted(s) if ch != "all"}}
    return out


def latency_histogram(rows: list[Any]) -> dict[str, Any]:
    counts = [0] * len(LATENCY_EDGES_S)
    for r in rows:
        if r["kind"] != "s":
            continue
        lo_s = int(r["lo_ms"]) / 1000.0
        i = max((k for k, e in enumerate(LATENCY_EDGES_S) if lo_s >= e), default=0)
        counts[i] += int(r["n"])
    return {"edges_s": list(LATENCY_EDGES_S), "counts": counts}


def load(hours: list[Any]) -> dict[str, Any]:
    by_hour, by_weekday = [0] * 24, [0] * 7
    peak_h: tuple[int, datetime] | None = None
    peak_m: tuple[int, datetime] | None = None
    for r in hours:
        n, b = int(r["n"]), r["bucket"]
        utc = b.astimezone(UTC)
        by_hour[utc.hour] += n
        by_weekday[utc.isoweekday() - 1] += n
        if peak_h is None or (n, -b.timestamp()) > (peak_h[0], -peak_h[1].timestamp()):
            peak_h = (n, b)
        pm, pa = int(r["peak_minute_n"]), r["peak_minute_at"]
        if peak_m is None or (pm, -pa.timestamp()) > (peak_m[0], -peak_m[1].timestamp()):
            peak_m = (pm, pa)
    return {"events": sum(by_hour), "by_hour_utc": by_hour, "by_weekday": by_weekday,
            "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "peak_hour": {"at": _iso(peak_h[1]), "events": peak_h[0]} if peak_h else None,
            "peak_minute": {"at": _iso(peak_m[1]), "events": peak_m[0]} if peak_m else None}


def unit_for(first: datetime, last: datetime, max_points: int = 300) -> tuple[str, int]:
    seconds = (last - first).total_seconds()
    return next((u, s) for u, s in _BUCKETS if seconds / s <= max_points or u == "day")
