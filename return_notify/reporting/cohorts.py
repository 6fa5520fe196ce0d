"""Return completion cohorts and the funnel from the aggregates (``stats_cohorts``, per
UTC day of initiation, and ``stats_returns``, per return), exact at any moment:

* whole days of cohorts from ``since``'s first whole day on, and the returns initiated in
  ``since``'s partial first day one by one;
* a return initiated more than once, first before ``since`` and again after it, belongs to
  the cohort of its first initiation at or after ``since`` (as in the raw query);
* the returns with events received after the watermark: their stored summary is taken out
  and their live one (stored, merged with those events) counted instead.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.reporting import facts
from return_notify.reporting.kpis import ReturnScope, completion_shape
from return_notify.reporting.window import Window


def _day_of(x: str, since: bool) -> str:
    """The cohort day of summary ``x`` (NULL: not in the cohort)."""
    if not since:
        return f"date_trunc('day', {x}.initiated_at, 'UTC')"
    later = (f"(SELECT min(e.occurred_at) FROM events e WHERE e.return_pk = {x}.return_pk "
             f"AND e.milestone = 'return_initiated' AND e.occurred_at >= :since)")
    return (f"date_trunc('day', CASE WHEN {x}.initiated_at >= :since THEN {x}.initiated_at "
            f"WHEN {x}.last_initiated_at >= :since THEN coalesce({later}, "
            f"{x}.last_initiated_at) END, 'UTC')")


def cohort_rows(session: Session, win: Window, tid: int | None,
                scope: ReturnScope | None = None) -> list[Any]:
    """(day, max_rank, n, completed, rejected, cancelled) of the window's cohorts (of the
    returns in ``scope``)."""
    since = win.since is not None
    p: dict[str, Any] = {"wm": win.watermark, "since": win.since, "d1": win.day_edge(),
                         "tid": tid, **facts.RANK_PARAMS}
    t_e = "e.tenant_id = :tid" if tid is not None else "TRUE"
    t_x = "tenant_id = :tid" if tid is not None else "TRUE"
    t_s = "s.tenant_id = :tid" if tid is not None else "TRUE"
    cohorts, in_scope, events, summaries = "stats_cohorts", "TRUE", "events e", "stats_returns s"
    if scope:  # the returns' region and category: in the scoped cohorts, or their return's
        cohorts = "stats_scope_cohorts"
        in_scope = facts.scope_condition("region", "category", scope, p)
        r_scope = facts.scope_condition("rs.region", "rs.product_category", scope, p)
        events = f"events e JOIN returns rs ON rs.id = e.return_pk AND {r_scope}"
        summaries = f"stats_returns s JOIN returns rs ON rs.id = s.return_pk AND {r_scope}"
    cols = "tenant_id, max_rank, completed, rejected, cancelled"
    s_cols = "s.tenant_id, s.max_rank, s.completed, s.rejected, s.cancelled"
    parts = [f"SELECT day, {cols}, n FROM {cohorts} WHERE {t_x} AND {in_scope}"
             + (" AND day >= :d1" if since else "")]
    if since:
        parts.append(f"SELECT date_trunc('day', s.initiated_at, 'UTC'), {s_cols}, 1 "
                     f"FROM {summaries} WHERE s.initiated_at >= :since "
                     f"AND s.initiated_at < :d1 AND {t_s}")
        parts.append(f"SELECT {_day_of('s', True)}, {s_cols}, 1 FROM {summaries} "
                     f"WHERE s.last_initiated_at > s.initiated_at AND s.initiated_at < :since "
                     f"AND s.last_initiated_at >= :since AND {t_s}")
    for alias, sign in (("st", -1), ("lv", 1)):
        parts.append(f"SELECT {_day_of(alias, since)}, {alias}.tenant_id, {alias}.max_rank, "
                     f"{alias}.completed, {alias}.rejected, {alias}.cancelled, {sign} FROM {alias}")
    sql = f"""
        WITH tail AS ({facts.return_facts(events, f'e.received_at >= :wm AND {t_e}')}),
        st AS (SELECT s.* FROM stats_returns s JOIN tail t USING (return_pk)),
        lv AS (SELECT {facts.merge_returns('s', 't')} FROM tail t
               LEFT JOIN stats_returns s USING (return_pk)),
        contrib AS ({' UNION ALL '.join(parts)})
        SELECT day, max_rank, sum(n) AS n, coalesce(sum(n) FILTER (WHERE completed), 0) AS completed,
               coalesce(sum(n) FILTER (WHERE rejected), 0) AS rejected,
               coalesce(sum(n) FILTER (WHERE cancelled), 0) AS cancelled
        FROM contrib WHERE day IS NOT NULL GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2"""
    return list(session.execute(text(sql), p).mappings())


def _period_start(day: datetime, period: str) -> datetime:
    d = day.astimezone(UTC)
    d = datetime(d.year, d.month, d.day)
    if period == "week":
        return d - timedelta(days=d.weekday())
    if period == "month":
        return d.replace(day=1)
    return d


def completion(session: Session, win: Window, tid: int | None, period: str,
               scope: ReturnScope | None = None) -> dict[str, Any]:
    """``kpis.completion``'s result from the aggregates."""
    grouped: dict[tuple[datetime, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in cohort_rows(session, win, tid, scope):
        g = grouped[(_period_start(r["day"], period), int(r["max_rank"]))]
        for k in ("n", "completed", "rejected", "cancelled"):
            g[k] += int(r[k])
    rows = [{"period": p, "max_rank": rank, **g} for (p, rank), g in sorted(grouped.items())
            if g["n"]]
    return completion_shape(rows, period)
