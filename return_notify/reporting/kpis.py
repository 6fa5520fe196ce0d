"""The business KPIs, computed in PostgreSQL: delivery success, notification latency,
return completion and funnel, engagement per milestone and channel, load pattern.

Definitions (also in docs/operating.md, "Business KPIs"):

* **success rate** = deliveries ``sent`` or ``delivered`` ÷ those plus ``failed`` and
  ``dead`` (a bounce after sending counts as failed); ``skipped``/``suppressed`` are
  policy, not failure, and in-flight ones are not settled: both are counted, not rated.
* **latency**: ``occurred_at`` (the source system's status change) → ``sent_at``
  (provider accepted) and → ``delivered_at`` (provider confirmed); average, p50, p95.
* **completion rate** per period: returns with a ``return_initiated`` event whose
  ``occurred_at`` falls in the period (the cohort) that reached ``refund_processed`` or
  ``return_completed`` (at any time so far) ÷ the cohort. The **funnel** counts the cohort's
  returns that reached each main-line milestone or a later one.
* **engagement** per milestone and channel: sent, delivered, undelivered (failed after
  sending: e-mail bounce/drop/block, SMS undelivered/failed), bounced, and in-app read
  (``inbox_items.read_at``).
* **load**: events received per hour of day and per ISO weekday (UTC), peak hour and minute.

Filters: ``since`` (deliveries ``created_at``, events ``received_at``, cohorts by
``occurred_at``), ``tenant`` (slug) and ``scope``: the returns' regions (each covering its
sub-regions: ``EU`` covers ``EU-DE``) and product categories, as a manager's principal is
limited (``GET /v1/stats``); a return without a region or category is outside any such
limit. Rows anonymised by retention or erasure still count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.lifecycle import MAIN_LINE, RANK

PERIODS = ("day", "week", "month")
COMPLETED = ("refund_processed", "return_completed")
LATENCY_EDGES_S = (0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                   21600.0, 86400.0)
_BUCKETS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))


_SINCE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class ReturnScope:
    """Returns in these regions (or their sub-regions) and these product categories;
    empty = no limit. Values as ``rules.normalize_region`` / ``normalize_category`` give."""

    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.regions or self.categories)


def parse_since(since: str | None, now: datetime | None = None) -> datetime | None:
    """``15m``, ``24h``, ``7d`` (ago) or an ISO time (UTC if it has no offset); ValueError
    with the accepted forms otherwise."""
    if not since or not since.strip():
        return None
    since = since.strip()
    if since[-1] in _SINCE_UNITS and since[:-1].isascii() and since[:-1].isdigit():
        try:
            return (now or datetime.now(UTC)) - timedelta(
                seconds=int(since[:-1]) * _SINCE_UNITS[since[-1]])
        except OverflowError:
            raise ValueError(f"since {since!r}: too far back") from None
    try:
        dt = datetime.fromisoformat(since)
    except ValueError:
        raise ValueError(f"since {since!r}: use a duration like 15m, 2h, 7d or an ISO "
                         "timestamp such as 2026-03-01T00:00:00+00:00") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _filters(ts: str, since: datetime | None, tenant: str | None,
             scope: ReturnScope | None = None) -> tuple[str, dict[str, Any]]:
    """WHERE clauses for rows aliased like ``ts`` (``d.created_at``: deliveries ``d``)."""
    clauses: list[str] = ["TRUE"]
    params: dict[str, Any] = {}
    if since is not None:
        clauses.append(f"{ts} >= :since")
        params["since"] = since
    if tenant:
        clauses.append("t.slug = :tenant")
        params["tenant"] = tenant
    if scope:
        alias = ts.split(".", 1)[0]
        conds = [f"rs.id = {alias}.return_pk"]
        if scope.regions:
            conds.append("EXISTS (SELECT 1 FROM unnest(CAST(:scope_regions AS text[])) p(r) "
                         "WHERE upper(rs.region) = p.r OR starts_with(upper(rs.region), p.r || '-'))")
            params["scope_regions"] = list(scope.regions)
        if scope.categories:
            conds.append("lower(rs.product_category) = ANY(CAST(:scope_categories AS text[]))")
            params["scope_categories"] = list(scope.categories)
        clauses.append(f"EXISTS (SELECT 1 FROM returns rs WHERE {' AND '.join(conds)})")
    return " AND ".join(clauses), params


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _f(v: Any) -> float | None:
    return None if v is None else round(float(v), 4)


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


# ------------------------------------------------------------------ success ----------

def delivery_success(session: Session, since: datetime | None = None,
                     tenant: str | None = None, scope: ReturnScope | None = None
                     ) -> dict[str, list[dict[str, Any]]]:
    """Counts and success rate by channel, provider, tenant and region (one scan)."""
    where, params = _filters("d.created_at", since, tenant, scope)
    rows = session.execute(text(f"""
        SELECT GROUPING(d.channel) AS g_ch, GROUPING(coalesce(d.provider, '(none)')) AS g_pr,
               GROUPING(t.slug) AS g_t,
               d.channel, coalesce(d.provider, '(none)') AS provider, t.slug,
               coalesce(r.region, '(none)') AS region, count(*) AS total,
               count(*) FILTER (WHERE d.state IN ('sent', 'delivered')) AS sent,
               count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.state = 'failed') AS failed,
               count(*) FILTER (WHERE d.state = 'dead') AS dead,
               count(*) FILTER (WHERE d.state IN ('skipped', 'suppressed')) AS not_sent,
               count(*) FILTER (WHERE d.state IN ('pending', 'sending', 'retrying',
                                                  'scheduled')) AS in_flight
        FROM deliveries d JOIN tenants t ON t.id = d.tenant_id JOIN returns r ON r.id = d.return_pk
        WHERE {where}
        GROUP BY GROUPING SETS ((d.channel), (coalesce(d.provider, '(none)')), (t.slug),
                                (coalesce(r.region, '(none)')))
    """), params).mappings().all()
    out: dict[str, list[dict[str, Any]]] = {"by_channel": [], "by_provider": [], "by_tenant": [],
                                            "by_region": []}
    for r in rows:
        if not r["g_ch"]:
            dim, key = "by_channel", r["channel"]
        elif not r["g_pr"]:
            dim, key = "by_provider", r["provider"]
        elif not r["g_t"]:
            dim, key = "by_tenant", r["slug"]
        else:
            dim, key = "by_region", r["region"]
        counts = {k: int(r[k]) for k in ("total", "sent", "delivered", "failed", "dead",
                                         "not_sent", "in_flight")}
        settled = counts["sent"] + counts["failed"] + counts["dead"]
        out[dim].append({"key": key, **counts, "success_rate": _rate(counts["sent"], settled)})
    for items in out.values():
        items.sort(key=lambda x: str(x["key"]))
    return out


# ------------------------------------------------------------------ latency ----------

def latency(session: Session, since: datetime | None = None,
            tenant: str | None = None, scope: ReturnScope | None = None) -> dict[str, Any]:
    """avg/p50/p95 of occurred_at → sent and → delivered, overall and by channel."""
    where, params = _filters("d.created_at", since, tenant, scope)
    sent = "extract(epoch FROM d.sent_at - d.occurred_at)"
    dlv = "extract(epoch FROM d.delivered_at - d.occurred_at)"
    rows = session.execute(text(f"""
        SELECT d.channel, GROUPING(d.channel) AS total_row,
               count(d.sent_at) AS n_sent, avg({sent}) AS avg_sent,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {sent}) AS p50_sent,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY {sent}) AS p95_sent,
               count(d.delivered_at) AS n_dlv, avg({dlv}) AS avg_dlv,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {dlv}) AS p50_dlv,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY {dlv}) AS p95_dlv
        FROM deliveries d JOIN tenants t ON t.id = d.tenant_id
        WHERE (d.sent_at IS NOT NULL OR d.delivered_at IS NOT NULL) AND {where}
        GROUP BY ROLLUP (d.channel)
    """), params).mappings().all()

    def shape(r: Any) -> dict[str, Any]:
        return {
            "to_sent": {"n": int(r["n_sent"]), "avg": _f(r["avg_sent"]), "p50": _f(r["p50_sent"]),
                        "p95": _f(r["p95_sent"])},
            "to_delivered": {"n": int(r["n_dlv"]), "avg": _f(r["avg_dlv"]),
                             "p50": _f(r["p50_dlv"]), "p95": _f(r["p95_dlv"])},
        }

    empty = {"to_sent": {"n": 0, "avg": None, "p50": None, "p95": None},
             "to_delivered": {"n": 0, "avg": None, "p50": None, "p95": None}}
    out: dict[str, Any] = {"all": empty, "by_channel": {}}
    for r in rows:
        if r["total_row"]:
            out["all"] = shape(r)
        else:
            out["by_channel"][r["channel"]] = shape(r)
    return out


def latency_histogram(session: Session, since: datetime | None = None,
                      tenant: str | None = None, scope: ReturnScope | None = None
                      ) -> dict[str, Any]:
    """How many notifications were sent within each occurred_at → sent bucket."""
    where, params = _filters("d.created_at", since, tenant, scope)
    params["edges"] = list(LATENCY_EDGES_S)
    counts = [0] * len(LATENCY_EDGES_S)
    for bucket, n in session.execute(text(f"""
        SELECT greatest(width_bucket(extract(epoch FROM d.sent_at - d.occurred_at)::float8,
                                     CAST(:edges AS float8[])), 1) AS b, count(*)
        FROM deliveries d JOIN tenants t ON t.id = d.tenant_id
        WHERE d.sent_at IS NOT NULL AND {where} GROUP BY 1
    """), params):
        counts[int(bucket) - 1] += int(n)
    return {"edges_s": list(LATENCY_EDGES_S), "counts": counts}


# ------------------------------------------------------------------ returns -----------

def completion(session: Session, since: datetime | None = None, tenant: str | None = None,
               period: str = "week", scope: ReturnScope | None = None) -> dict[str, Any]:
    """Completion rate per period of initiation, and the funnel of the same cohort."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    where, params = _filters("e.occurred_at", since, tenant, scope)
    params.update(period=period, ms=[m.value for m in MAIN_LINE],
                  ranks=[RANK[m] for m in MAIN_LINE], done=list(COMPLETED))
    rows = session.execute(text(f"""
        WITH cohort AS (
            SELECT e.return_pk, min(e.occurred_at) AS initiated_at
            FROM events e JOIN tenants t ON t.id = e.tenant_id
            WHERE e.milestone = 'return_initiated' AND {where}
            GROUP BY 1
        ), reached AS (
            SELECT c.return_pk, c.initiated_at,
                   coalesce(max(rk.rank), 0) AS max_rank,
                   bool_or(e.milestone = ANY(CAST(:done AS text[]))) AS completed,
                   bool_or(e.milestone = 'return_rejected') AS rejected,
                   bool_or(e.milestone = 'return_cancelled') AS cancelled
            FROM cohort c JOIN events e ON e.return_pk = c.return_pk
            LEFT JOIN unnest(CAST(:ms AS text[]), CAST(:ranks AS int[])) AS rk(m, rank)
              ON rk.m = e.milestone
            GROUP BY 1, 2
        )
        SELECT date_trunc(:period, initiated_at AT TIME ZONE 'UTC') AS period, max_rank,
               count(*) AS n, count(*) FILTER (WHERE completed) AS completed,
               count(*) FILTER (WHERE rejected) AS rejected,
               count(*) FILTER (WHERE cancelled) AS cancelled
        FROM reached GROUP BY 1, 2 ORDER BY 1, 2
    """), params).mappings().all()
    return completion_shape(rows, period)


def completion_shape(rows: Any, period: str) -> dict[str, Any]:
    """Periods, total and funnel from rows of (period, max_rank, n, completed, rejected,
    cancelled) in (period, max_rank) order (also the aggregates' reader's)."""
    periods: dict[str, dict[str, Any]] = {}
    by_rank: dict[int, int] = {}
    for r in rows:
        key = r["period"].date().isoformat()
        p = periods.setdefault(key, {"period": key, "initiated": 0, "completed": 0,
                                     "rejected": 0, "cancelled": 0})
        for k, src in (("initiated", "n"), ("completed", "completed"), ("rejected", "rejected"),
                       ("cancelled", "cancelled")):
            p[k] += int(r[src])
        by_rank[int(r["max_rank"])] = by_rank.get(int(r["max_rank"]), 0) + int(r["n"])
    total = {k: sum(p[k] for p in periods.values())
             for k in ("initiated", "completed", "rejected", "cancelled")}
    for p in [*periods.values(), total]:
        p["rate"] = _rate(p["completed"], p["initiated"])
    funnel = []
    for m in MAIN_LINE:
        reached = sum(n for rank, n in by_rank.items() if rank >= RANK[m])
        funnel.append({"milestone": m.value, "returns": reached,
                       "share": _rate(reached, total["initiated"])})
    return {"period": period, "periods": list(periods.values()), "total": total,
            "funnel": funnel}


# ------------------------------------------------------------------ engagement --------

def _has_inbox(session: Session) -> bool:
    return bool(session.execute(text("SELECT to_regclass('inbox_items') IS NOT NULL")).scalar())


def engagement(session: Session, since: datetime | None = None,
               tenant: str | None = None, scope: ReturnScope | None = None
               ) -> list[dict[str, Any]]:
    """Per milestone and channel: sent, delivered, undelivered, bounced, read, and rates."""
    where, params = _filters("d.created_at", since, tenant, scope)
    inbox = _has_inbox(session)
    read = "count(i.read_at)" if inbox else "0"
    join = "LEFT JOIN inbox_items i ON i.delivery_id = d.id" if inbox else ""
    rows = session.execute(text(f"""
        SELECT d.milestone, d.channel,
               count(*) FILTER (WHERE d.sent_at IS NOT NULL) AS sent,
               count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
               count(*) FILTER (WHERE d.state = 'failed' AND d.sent_at IS NOT NULL) AS undelivered,
               count(*) FILTER (WHERE d.state = 'failed' AND d.last_error LIKE 'bounced:%')
                   AS bounced,
               {read} AS read
        FROM deliveries d JOIN tenants t ON t.id = d.tenant_id {join}
        WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2
    """), params).mappings().all()
    order = {m.value: i for i, m in enumerate(MAIN_LINE)}
    out = []
    for r in sorted(rows, key=lambda r: (order.get(r["milestone"], 99), r["milestone"],
                                         r["channel"])):
        sent = int(r["sent"])
        item = {"milestone": r["milestone"], "channel": r["channel"], "sent": sent,
                "delivered": int(r["delivered"]), "undelivered": int(r["undelivered"]),
                "bounced": int(r["bounced"]), "read": int(r["read"])}
        item["delivered_rate"] = _rate(item["delivered"], sent)
        item["undelivered_rate"] = _rate(item["undelivered"], sent)
        item["read_rate"] = _rate(item["read"], sent) if r["channel"] == "inapp" else None
        out.append(item)
    return out


# ------------------------------------------------------------------ load --------------

def load_pattern(session: Session, since: datetime | None = None,
                 tenant: str | None = None, scope: ReturnScope | None = None) -> dict[str, Any]:
    """Events received per hour of day and per ISO weekday (UTC); peak hour and minute."""
    where, params = _filters("e.received_at", since, tenant, scope)
    base = f"FROM events e JOIN tenants t ON t.id = e.tenant_id WHERE {where}"
    by_hour, by_weekday = [0] * 24, [0] * 7
    for h, n in session.execute(text(
            f"SELECT extract(hour FROM e.received_at AT TIME ZONE 'UTC')::int, count(*) {base} "
            "GROUP BY 1"), params):
        by_hour[int(h)] = int(n)
    for d, n in session.execute(text(
            f"SELECT extract(isodow FROM e.received_at AT TIME ZONE 'UTC')::int, count(*) {base} "
            "GROUP BY 1"), params):
        by_weekday[int(d) - 1] = int(n)
    peaks = {}
    for unit in ("hour", "minute"):
        row = session.execute(text(
            f"SELECT date_trunc('{unit}', e.received_at) AS at, count(*) AS n {base} "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"), params).first()
        peaks[f"peak_{unit}"] = ({"at": _iso(row.at), "events": int(row.n)} if row else None)
    return {"events": sum(by_hour), "by_hour_utc": by_hour, "by_weekday": by_weekday,
            "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], **peaks}


def throughput(session: Session, since: datetime | None = None,
               tenant: str | None = None, max_points: int = 300,
               scope: ReturnScope | None = None) -> dict[str, Any]:
    """Events received and notifications sent per time bucket (second … day, by span)."""
    ev_where, params = _filters("e.received_at", since, tenant, scope)
    d_where, _ = _filters("d.created_at", since, tenant, scope)
    span = session.execute(text(f"""
        SELECT min(x), max(x) FROM (
            SELECT e.received_at AS x FROM events e JOIN tenants t ON t.id = e.tenant_id
            WHERE {ev_where}
            UNION ALL
            SELECT d.sent_at FROM deliveries d JOIN tenants t ON t.id = d.tenant_id
            WHERE d.sent_at IS NOT NULL AND {d_where}) s
    """), params).one()
    if span[0] is None:
        return {"bucket": None, "bucket_s": None, "points": []}
    seconds = (span[1] - span[0]).total_seconds()
    unit, size = next((u, s) for u, s in _BUCKETS if seconds / s <= max_points or u == "day")
    rows = session.execute(text(f"""
        SELECT b, sum(ev) AS events, sum(sent) AS sent FROM (
            SELECT date_trunc('{unit}', e.received_at) AS b, 1 AS ev, 0 AS sent
            FROM events e JOIN tenants t ON t.id = e.tenant_id WHERE {ev_where}
            UNION ALL
            SELECT date_trunc('{unit}', d.sent_at), 0, 1
            FROM deliveries d JOIN tenants t ON t.id = d.tenant_id
            WHERE d.sent_at IS NOT NULL AND {d_where}) s
        GROUP BY b ORDER BY b
    """), params).all()
    return {"bucket": unit, "bucket_s": size,
            "points": [{"t": _iso(b), "events": int(ev), "sent": int(st)} for b, ev, st in rows]}


def compute_kpis(session: Session, *, since: datetime | None = None, tenant: str | None = None,
                 period: str = "week", scope: ReturnScope | None = None) -> dict[str, Any]:
    """Every KPI above in one JSON-ready dict (``stats --json``, the report, the API)."""
    comp = completion(session, since, tenant, period, scope)
    filters: dict[str, Any] = {"since": _iso(since), "tenant": tenant}
    if scope:
        filters.update(regions=list(scope.regions), categories=list(scope.categories))
    return {
        "filters": filters,
        "success": delivery_success(session, since, tenant, scope),
        "latency_s": latency(session, since, tenant, scope),
        "latency_histogram": latency_histogram(session, since, tenant, scope),
        "completion": {k: comp[k] for k in ("period", "periods", "total")},
        "funnel": comp["funnel"],
        "engagement": engagement(session, since, tenant, scope),
        "load": load_pattern(session, since, tenant, scope),
        "throughput": throughput(session, since, tenant, scope=scope),
    }
