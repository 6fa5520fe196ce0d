"""Events per hour of a region/category scope from the aggregates: the load pattern and
throughput of a regional or category manager's KPIs (``rolled.compute_kpis`` with a scope).

``stats_scope_event_hours`` holds one row per hour and scope key (a region a scope may
name, or ``*``, and a category, or ``*``): a scope is the sum of its disjoint keys
(``facts.scope_keys``). Counts, first and last add up; the busiest minute does not: of a
scope of one key it is stored, of several it is found by branch and bound, the hours
whose upper bound (the sum of the keys' busiest minutes, at most the hour's events)
could beat the best found counted from their raw events, best bound first, a few hours
per statement, until no hour left can beat it. Exact, and a few hours' raw rows at most
in practice; an hour whose raw events were dropped (``RSN_HISTORY_MONTHS``) counts with
the events left, as the raw query does.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.reporting import facts
from return_notify.reporting.kpis import ReturnScope
from return_notify.reporting.window import Window

BATCH_HOURS = 24
_SUMS = ("n", *(f"n_{d}" for d in facts.DISPOSITIONS))


def load_event_hours(session: Session, win: Window, tid: int | None, scope: ReturnScope
                     ) -> list[dict[str, Any]]:
    """``aggregates.load_event_hours``'s rows for the returns in ``scope``, with the exact
    busiest minute of the busiest hour(s)."""
    keys = facts.scope_keys(scope)
    p: dict[str, Any] = {"t": tid or 0, "rk": [k[0] for k in keys], "ck": [k[1] for k in keys]}
    sums = ", ".join(f"sum({c}) AS {c}" for c in _SUMS)
    only = f"e.tenant_id = {int(tid)}" if tid is not None else "TRUE"
    raw_scope = facts.scope_condition("r.region", "r.product_category", scope, p)
    raw = facts.event_hour_facts(
        "events e JOIN returns r ON r.id = e.return_pk",
        f"{win.raw('e.received_at', p, grained=False)} AND {only} AND {raw_scope}")
    cols = ", ".join(facts.EVENT_HOUR_COLUMNS[1:])
    rows = [dict(r) for r in session.execute(text(f"""
        SELECT bucket, {sums}, max(peak_minute_n) AS peak_minute_n,
               (array_agg(peak_minute_at ORDER BY peak_minute_n DESC, peak_minute_at))[1]
                   AS peak_minute_at,
               min(min_at) AS min_at, max(max_at) AS max_at,
               least(sum(n), sum(peak_minute_n)) AS peak_bound, count(*) AS n_keys
        FROM stats_scope_event_hours
        WHERE tenant_id = :t AND {win.hourly(p)}
          AND (region_key, category_key) IN (
              SELECT * FROM unnest(CAST(:rk AS text[]), CAST(:ck AS text[])))
        GROUP BY bucket
        UNION ALL
        SELECT {cols}, peak_minute_n, 1 FROM ({raw}) f WHERE f.tenant_id = :t
        ORDER BY bucket"""), p).mappings()]
    _exact_peak(session, rows, tid, scope)
    return rows


def _exact_peak(session: Session, rows: list[dict[str, Any]], tid: int | None,
                scope: ReturnScope) -> None:
    """Make the peak minute of ``rows`` exact where it could be the busiest: an hour of
    several keys whose bound beats the best exact minute is counted from its raw events."""
    def rank(n: int, at: datetime) -> tuple[int, float]:
        return n, -at.timestamp()

    exact = [r for r in rows if r["n_keys"] == 1]
    best = max((rank(r["peak_minute_n"], r["peak_minute_at"]) for r in exact), default=None)
    floor = max((int(r["peak_minute_n"]) for r in rows), default=0)  # reached somewhere
    open_ = sorted((r for r in rows if r["n_keys"] > 1 and r["peak_bound"] >= floor),
                   key=lambda r: (-r["peak_bound"], r["bucket"]))
    while open_:
        if best is not None:  # an hour that cannot beat the best exact minute stays out
            open_ = [r for r in open_ if rank(int(r["peak_bound"]), r["bucket"]) > best]
        size = BATCH_HOURS if best is not None else 2 * BATCH_HOURS
        batch, open_ = open_[:size], open_[size:]
        if not batch:
            break
        found = _raw_peaks(session, [r["bucket"] for r in batch], tid, scope)
        for r in batch:
            r["peak_minute_n"], r["peak_minute_at"] = found.get(r["bucket"], (0, r["bucket"]))
            r["n_keys"] = 1
            if r["peak_minute_n"]:
                cand = rank(r["peak_minute_n"], r["peak_minute_at"])
                best = cand if best is None else max(best, cand)


def _raw_peaks(session: Session, hours: list[datetime], tid: int | None, scope: ReturnScope
               ) -> dict[datetime, tuple[int, datetime]]:
    """The busiest minute (earliest of equals) of each hour, from the scope's raw events."""
    p: dict[str, Any] = {}
    ranges = []
    for i, h in enumerate(hours):
        ranges.append(f"(e.received_at >= :lo{i} AND e.received_at < :hi{i})")
        p[f"lo{i}"], p[f"hi{i}"] = h, h + timedelta(hours=1)
    only = f"AND e.tenant_id = {int(tid)}" if tid is not None else ""
    cond = facts.scope_condition("r.region", "r.product_category", scope, p)
    return {h: (int(n), mi) for h, mi, n in session.execute(text(f"""
        SELECT DISTINCT ON (h) h, mi, n FROM (
            SELECT {facts.hour_of('e.received_at')} AS h,
                   date_trunc('minute', e.received_at, 'UTC') AS mi, count(*) AS n
            FROM events e JOIN returns r ON r.id = e.return_pk
            WHERE ({' OR '.join(ranges)}) {only} AND {cond}
            GROUP BY 1, 2) m
        ORDER BY h, n DESC, mi"""), p)}
