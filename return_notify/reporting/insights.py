"""The two insights the module promises, as plain functions over the stored signals.

**Effectiveness** (:func:`effectiveness`): do timely updates go with happier customers?
For each rated return, its *time to status update* is the median, over the return's
notified events, of ``occurred_at`` → the first message about it sent (any channel); its
*updates* are how many of its events reached the customer. Scores (1-5) are then grouped by
time band (under 1 minute, 1 hour, 1 day, more) and by number of updates: mean score with a
t interval, share satisfied (4 or 5) with a Wilson interval, the score counts, and
Spearman's ρ between time and score. Optionally per tenant, region or category.

**Channel preference** (:func:`channel_preference`, :func:`recommend`): per milestone and
channel, the notifications sent (one per return, milestone and channel: the unit a customer
engages with), and of those sent while the tenant's tracking was on, how many were opened
(email), clicked (any channel) and, in-app, read. Channels are ranked per milestone by
click rate — the one action every channel can report (email opens are inflated by mail
privacy proxies, SMS has no open) — conservatively, by the lower end of its Wilson
interval, and only with at least ``min_sample`` tracked notifications.

Filters (:class:`InsightFilter`): tenant slugs, a time window (ratings by ``rated_at``,
notifications by ``created_at``, as the KPIs count deliveries), regions (each covering its
sub-regions) and categories.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.events import Milestone
from return_notify.reporting.intervals import Interval, mean_interval, spearman, wilson

__all__ = ["MIN_SAMPLE", "TIME_BANDS", "InsightFilter", "band_of", "channel_preference",
           "channels_to_apply", "effectiveness", "rank_channels", "recommend",
           "sent_notifications", "summarise_scores"]

#: (label, upper bound in seconds): a return falls in the first band whose bound exceeds it
TIME_BANDS: tuple[tuple[str, float], ...] = (
    ("< 1 min", 60.0), ("< 1 h", 3600.0), ("< 1 day", 86400.0), (">= 1 day", float("inf")))
NO_UPDATE = "no update"
UPDATE_BINS = 10  # 1 … 9 updates, then "10+"
MIN_SAMPLE = 30
Dimension = Literal["tenant", "region", "category"]
Measure = Literal["median", "worst"]


@dataclass(frozen=True)
class InsightFilter:
    """Which returns and notifications count (empty: all)."""

    tenants: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def where(self, ts: str) -> tuple[str, dict[str, Any]]:
        """SQL conditions on rows joined to ``t`` (tenants) and ``r`` (returns), ``ts`` the
        time column that the window applies to."""
        clauses: list[str] = ["TRUE"]
        params: dict[str, Any] = {}
        if self.tenants:
            clauses.append("t.slug = ANY(CAST(:f_tenants AS text[]))")
            params["f_tenants"] = list(self.tenants)
        if self.since is not None:
            clauses.append(f"{ts} >= :f_since")
            params["f_since"] = self.since
        if self.until is not None:
            clauses.append(f"{ts} < :f_until")
            params["f_until"] = self.until
        if self.regions:
            clauses.append("EXISTS (SELECT 1 FROM unnest(CAST(:f_regions AS text[])) p(x) "
                           "WHERE upper(r.region) = p.x OR starts_with(upper(r.region), p.x || '-'))")
            params["f_regions"] = [x.upper() for x in self.regions]
        if self.categories:
            clauses.append("lower(r.product_category) = ANY(CAST(:f_categories AS text[]))")
            params["f_categories"] = [x.lower() for x in self.categories]
        return " AND ".join(clauses), params

    def joins(self) -> str:
        """The joins :meth:`where` needs on rows with ``tenant_id`` and ``return_pk`` aliased
        ``alias`` (none when nothing filters by tenant, region or category)."""
        out = ""
        if self.tenants:
            out += " JOIN tenants t ON t.id = {a}.tenant_id"
        if self.regions or self.categories:
            out += " JOIN returns r ON r.id = {a}.return_pk"
        return out


def sent_notifications(flt: InsightFilter, latest: int | None = None
                       ) -> tuple[str, dict[str, Any]]:
    """A FROM item ``d``: the deliveries sent that ``flt`` lets through (its window on
    ``created_at``, as the KPIs'); with ``latest``, only that many, the last created: a
    bounded read (of the window only) along
    ``ix_deliveries_tenant_created`` for one tenant (``ix_deliveries_created`` otherwise),
    whatever the history's size. A region/category scope is then checked row by row on the
    return (a primary-key lookup), so that the read stays in index order and stops at
    ``latest``: it reads as far back as the scope's share of the rows makes it."""
    one = flt.tenants[0] if len(flt.tenants) == 1 else None
    scoped = bool(flt.regions or flt.categories) and latest is not None
    keep = replace(flt, tenants=() if one is not None else flt.tenants,
                   regions=() if scoped else flt.regions,
                   categories=() if scoped else flt.categories)
    where, params = keep.where("d.created_at")
    if one is not None:  # an equality on tenant_id: the index gives its rows newest first
        where += " AND d.tenant_id = (SELECT id FROM tenants WHERE slug = :f_tenant)"
        params["f_tenant"] = one
    if scoped:  # a scalar subquery: never turned into a join that would read the scope first
        cond, more = InsightFilter(regions=flt.regions, categories=flt.categories).where("")
        where += (f" AND coalesce((SELECT {cond} FROM returns r WHERE r.id = d.return_pk), "
                  "false)")
        params.update(more)
    sql = ("SELECT d.id, d.tenant_id, d.return_pk, d.event_pk, d.milestone, d.channel, "
           "d.occurred_at, d.sent_at FROM deliveries d" + keep.joins().format(a="d")
           + f" WHERE d.sent_at IS NOT NULL AND {where}")
    if latest is not None:
        sql += " ORDER BY d.created_at DESC LIMIT :f_latest"
        params["f_latest"] = latest
    return f"({sql}) d", params


# ------------------------------------------------------------------ effectiveness -------

_RATED = """
WITH picked AS MATERIALIZED (  -- the ratings first (and the latest of them), then their returns
    SELECT sr.return_pk, sr.score, sr.tenant_id FROM satisfaction_ratings sr{joins}
    WHERE {where}{latest}
), rated AS MATERIALIZED (
    SELECT p.return_pk, p.score, t.slug AS tenant, r.region, r.product_category AS category
    FROM picked p JOIN returns r ON r.id = p.return_pk JOIN tenants t ON t.id = p.tenant_id
), updates AS (
    -- a delivery carries its event's occurred_at: no need to read the events
    SELECT d.return_pk,
           greatest(0.0, extract(epoch FROM min(d.sent_at) - min(d.occurred_at))) AS s
    FROM deliveries d
    WHERE d.return_pk IN (SELECT return_pk FROM rated) AND d.sent_at IS NOT NULL
    GROUP BY d.return_pk, d.event_pk
), per AS (
    SELECT return_pk, percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS typical_s,
           max(s) AS worst_s, count(*) AS updates
    FROM updates GROUP BY return_pk
)
SELECT rated.score, rated.tenant, rated.region, rated.category, per.typical_s, per.worst_s,
       coalesce(per.updates, 0) AS updates
FROM rated LEFT JOIN per ON per.return_pk = rated.return_pk
"""


def band_of(seconds: float | None) -> str:
    """The time band of a time to status update (``no update`` for None)."""
    if seconds is None:
        return NO_UPDATE
    return next(label for label, bound in TIME_BANDS if seconds < bound)


def _updates_bin(n: int) -> str:
    return f"{UPDATE_BINS}+" if n >= UPDATE_BINS else str(n)


def summarise_scores(scores: Sequence[int]) -> dict[str, Any]:
    """n, the mean score and share satisfied (4-5) with their intervals, and the counts."""
    return {"n": len(scores), "mean_score": mean_interval([float(s) for s in scores]).as_dict(),
            "satisfied_share": wilson(sum(1 for s in scores if s >= 4), len(scores)).as_dict(),
            "scores": {str(k): sum(1 for s in scores if s == k) for k in range(1, 6)}}


def _group(rows: Sequence[Any], measure: Measure) -> dict[str, Any]:
    by_band: dict[str, list[int]] = defaultdict(list)
    by_updates: dict[str, list[int]] = defaultdict(list)
    timed: list[tuple[float, int]] = []
    for row in rows:
        seconds = row.typical_s if measure == "median" else row.worst_s
        seconds = None if seconds is None else float(seconds)
        by_band[band_of(seconds)].append(int(row.score))
        by_updates[_updates_bin(int(row.updates))].append(int(row.score))
        if seconds is not None:
            timed.append((seconds, int(row.score)))
    bands = [label for label, _ in TIME_BANDS] + [NO_UPDATE]
    by_time = [{"band": b, **summarise_scores(by_band[b])} for b in bands if by_band.get(b)]
    bins = sorted(by_updates, key=lambda k: int(k.rstrip("+")))
    rho = spearman([t for t, _ in timed], [s for _, s in timed])
    timed_bands = [b for b in by_time if b["band"] != NO_UPDATE]
    effect: dict[str, Any] | None = None
    if len(timed_bands) >= 2:
        fast, slow = timed_bands[0], timed_bands[-1]
        fi, si = (Interval(**fast["mean_score"]), Interval(**slow["mean_score"]))
        effect = {"fastest_band": fast["band"], "slowest_band": slow["band"],
                  "difference": None if fi.value is None or si.value is None
                  else round(fi.value - si.value, 4),
                  "separated": not fi.overlaps(si)}
    scores = [int(r.score) for r in rows]
    return {**summarise_scores(scores),
            "median_time_to_update_s": round(statistics.median(t for t, _ in timed), 3)
            if timed else None,
            "by_time_to_update": by_time,
            "by_updates": [{"updates": k, **summarise_scores(by_updates[k])} for k in bins],
            "time_vs_score": {"spearman_rho": rho.as_dict()}, "effect": effect}


def effectiveness(session: Session, flt: InsightFilter | None = None, *,
                  by: Dimension | None = None, measure: Measure = "median",
                  latest: int | None = None) -> dict[str, Any]:
    """Satisfaction by time to status update and by number of updates (module docstring);
    ``by`` splits it per tenant, region or category; ``measure`` ``worst`` bands a return
    by its slowest update instead of its median one; ``latest``: only that many ratings,
    the last rated."""
    flt = flt or InsightFilter()
    where, params = flt.where("sr.rated_at")
    cap = ""
    if latest is not None:
        cap = " ORDER BY sr.rated_at DESC, sr.id DESC LIMIT :f_latest"
        params["f_latest"] = latest
    sql = _RATED.format(joins=flt.joins().format(a="sr"), where=where, latest=cap)
    rows = session.execute(text(sql), params).all()
    groups: dict[str | None, list[Any]] = defaultdict(list)
    for row in rows:
        groups[getattr(row, by) if by else None].append(row)
    return {
        "measure": measure, "by": by, "rated_returns": len(rows),
        "bands": [label for label, _ in TIME_BANDS],
        "groups": [{"key": key, **_group(items, measure)}
                   for key, items in sorted(groups.items(), key=lambda kv: str(kv[0] or ""))],
    }


# ------------------------------------------------------------------ channel preference --

_UNITS = """
WITH units AS (
    SELECT d.return_pk, d.milestone, d.channel, min(d.sent_at) AS sent_at,
           coalesce(min(d.sent_at) >= ti.tracking_since, false) AS tracked,
           coalesce(bool_or(ii.read_at IS NOT NULL), false) AS read
    FROM {sent}
    LEFT JOIN tenant_insights ti ON ti.tenant_id = d.tenant_id
    {read}
    GROUP BY d.return_pk, d.milestone, d.channel, ti.tracking_since
), signals AS (
    SELECT u.milestone, u.channel, u.tracked, u.read, {signals}
)
SELECT milestone, channel, count(*) AS sent, count(*) FILTER (WHERE tracked) AS tracked,
       count(*) FILTER (WHERE tracked AND opened) AS opened,
       count(*) FILTER (WHERE tracked AND clicked) AS clicked,
       count(*) FILTER (WHERE read) AS read
FROM signals GROUP BY milestone, channel
"""
#: the read state and the signals of every sent notification: hash joins
_WHOLE = {
    "read": "LEFT JOIN inbox_items ii ON ii.delivery_id = d.id",
    "signals": """
           EXISTS (SELECT 1 FROM engagement_signals s WHERE s.return_pk = u.return_pk
                   AND s.milestone = u.milestone AND s.channel = u.channel
                   AND s.kind = 'open') AS opened,
           EXISTS (SELECT 1 FROM engagement_signals s WHERE s.return_pk = u.return_pk
                   AND s.milestone = u.milestone AND s.channel = u.channel
                   AND s.kind = 'click') AS clicked
    FROM units u""",
}
#: of a bounded set: one index lookup each (inbox_items.delivery_id, uq_engagement_signals_once)
#: rather than a hash of every inbox item and signal (the aggregate and LIMIT keep the
#: planner from flattening the lateral subqueries into plain joins)
_LOOKUP = {
    "read": "LEFT JOIN LATERAL (SELECT ii.read_at FROM inbox_items ii "
            "WHERE ii.delivery_id = d.id LIMIT 1) ii ON true",
    "signals": """
           coalesce(s.opened, false) AS opened, coalesce(s.clicked, false) AS clicked
    FROM units u CROSS JOIN LATERAL (
        SELECT bool_or(s.kind = 'open') AS opened, bool_or(s.kind = 'click') AS clicked
        FROM engagement_signals s WHERE s.return_pk = u.return_pk
        AND s.milestone = u.milestone AND s.channel = u.channel) s""",
}


def channel_preference(session: Session, flt: InsightFilter | None = None,
                       latest: int | None = None) -> list[dict[str, Any]]:
    """Per milestone (lifecycle order) and channel: notifications sent and tracked, and the
    open (email), click and read (in-app) counts and rates with Wilson intervals;
    ``latest``: of only that many deliveries sent, the last created."""
    sent, params = sent_notifications(flt or InsightFilter(), latest)
    out = []
    sql = _UNITS.format(sent=sent, **(_WHOLE if latest is None else _LOOKUP))
    for row in session.execute(text(sql), params).all():
        tracked = int(row.tracked)
        out.append({
            "milestone": row.milestone, "channel": row.channel, "sent": int(row.sent),
            "tracked": tracked, "opened": int(row.opened) if row.channel == "email" else None,
            "clicked": int(row.clicked),
            "read": int(row.read) if row.channel == "inapp" else None,
            "open_rate": wilson(int(row.opened), tracked).as_dict()
            if row.channel == "email" else None,
            "click_rate": wilson(int(row.clicked), tracked).as_dict(),
            "read_rate": wilson(int(row.read), int(row.sent)).as_dict()
            if row.channel == "inapp" else None,
        })
    order = {m.value: i for i, m in enumerate(Milestone)}
    return sorted(out, key=lambda r: (order.get(r["milestone"], 99), r["channel"]))


def rank_channels(rows: Iterable[dict[str, Any]], min_sample: int = MIN_SAMPLE
                  ) -> dict[str, Any]:
    """One milestone's channels, best first by the low end of the click rate's interval
    (then the rate itself); those with fewer than ``min_sample`` tracked notifications are
    left out of the order and listed as ``insufficient``."""
    rows = list(rows)
    enough = [r for r in rows if r["tracked"] >= min_sample]
    ranked = sorted(enough, key=lambda r: (-(r["click_rate"]["low"] or 0.0),
                                           -(r["click_rate"]["value"] or 0.0), r["channel"]))
    evidence = [{"channel": r["channel"], "tracked": r["tracked"], "clicked": r["clicked"],
                 "click_rate": r["click_rate"]} for r in ranked]
    clear = None
    if len(ranked) >= 2:
        first, second = (Interval(**ranked[i]["click_rate"]) for i in (0, 1))
        clear = not first.overlaps(second)
    return {"order": [r["channel"] for r in ranked], "evidence": evidence,
            "clear_winner": clear,
            "insufficient": [{"channel": r["channel"], "tracked": r["tracked"]}
                             for r in rows if r["tracked"] < min_sample]}


def recommend(session: Session, flt: InsightFilter | None = None,
              min_sample: int = MIN_SAMPLE, latest: int | None = None,
              rows: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The recommended channel order of every milestone with sent notifications, with its
    evidence (see :func:`rank_channels`); from ``rows`` of :func:`channel_preference` when
    given (no query)."""
    per: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows if rows is not None else channel_preference(session, flt, latest):
        per[row["milestone"]].append(row)
    return [{"milestone": m, "min_sample": min_sample, **rank_channels(rows, min_sample)}
            for m, rows in per.items()]


def channels_to_apply(order: Sequence[str], top: int, keep_inapp: bool = True) -> list[str]:
    """The channels a rule gets from a recommended ``order``: the best ``top``, plus in-app
    (``keep_inapp``) when they leave it out, so that a customer without the top channels'
    contact details (no phone for SMS) still hears about the milestone. ``ValueError`` when
    the order is empty (not enough evidence) or ``top`` is below 1."""
    if top < 1:
        raise ValueError("top must be at least 1")
    if not order:
        raise ValueError("no channel has enough tracked notifications to recommend one")
    chosen = list(order[:top])
    if keep_inapp and "inapp" not in chosen:
        chosen.append("inapp")
    return chosen
