"""The insights beside the KPIs: what ``stats --json``, ``GET /v1/stats`` and the HTML report
show as their ``insights`` object.

:func:`insights_summary` takes the KPIs' filters (``since``, one tenant, a region/category
scope) and computes, in the caller's session:

* ``effectiveness`` — :func:`insights.effectiveness` (satisfaction by time to status update
  band and by number of updates, counts and 95 % intervals, Spearman's ρ), over the
  window's latest ``RSN_STATS_INSIGHT_RATINGS`` ratings (by ``rated_at``);
* ``channel_preference`` — :func:`insights.channel_preference` rows (``channels``: open,
  click and read rates per milestone and channel) and :func:`insights.recommend`'s order
  per milestone with its evidence (``recommendations``);
* ``time_split`` — :func:`timing.time_split`: source lag vs pipeline per source and channel;

the last two over the window's latest ``RSN_STATS_INSIGHT_NOTIFICATIONS`` notifications sent
(by ``created_at``, along its index): every part reads a bounded set whatever the history's
size. ``limits`` says which caps applied (None: the whole window) and ``capped`` whether a
cap cut the window (``null`` for a part not computed). The objects have the shape of
``return-notify insights effectiveness|channels|timing --json`` (which read the whole
window: the same numbers when no cap cut it). ``parts`` selects what to compute
(:func:`parse_parts`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.reporting.insights import (
    MIN_SAMPLE,
    InsightFilter,
    channel_preference,
    effectiveness,
    recommend,
    sent_notifications,
)
from return_notify.reporting.kpis import ReturnScope
from return_notify.reporting.timing import time_split

__all__ = ["PARTS", "insights_summary", "parse_parts"]

#: the parts, in the order they are shown
PARTS = ("effectiveness", "channels", "timing")


def parse_parts(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """``all`` (or None), ``none``, or a comma-separated subset of :data:`PARTS`; ValueError
    naming the accepted values otherwise."""
    if value is None:
        return PARTS
    items = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    items = [v for v in items if v]
    if items == ["all"]:
        return PARTS
    if items == ["none"] or not items:
        return ()
    unknown = [v for v in items if v not in PARTS]
    if unknown:
        raise ValueError(f"insights: unknown {', '.join(unknown)}; use all, none or any of "
                         f"{', '.join(PARTS)} (comma-separated)")
    return tuple(p for p in PARTS if p in items)


def _cap(value: int | None) -> int | None:
    return value if value else None


def insights_summary(session: Session, *, since: datetime | None = None,
                     tenant: str | None = None, scope: ReturnScope | None = None,
                     parts: Iterable[str] = PARTS, notifications: int | None = None,
                     ratings: int | None = None, min_sample: int = MIN_SAMPLE
                     ) -> dict[str, Any]:
    """The insights of one tenant (or all) in a scope since a time (module docstring).
    ``notifications`` / ``ratings``: the caps (default: the settings; 0: none)."""
    from return_notify.config.settings import get_settings

    settings = get_settings()
    n_cap = _cap(settings.stats_insight_notifications if notifications is None
                 else notifications)
    r_cap = _cap(settings.stats_insight_ratings if ratings is None else ratings)
    scope = scope or ReturnScope()
    flt = InsightFilter(tenants=(tenant,) if tenant else (), since=since,
                        regions=scope.regions, categories=scope.categories)
    wanted = set(parts)
    # the sorts and lookups of these reads are small: no JIT compile, sorts in memory
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '16MB'"))
    out: dict[str, Any] = {
        "parts": [p for p in PARTS if p in wanted],
        "filters": {"since": since.isoformat() if since else None, "tenant": tenant,
                    "regions": list(scope.regions), "categories": list(scope.categories)},
        "limits": {"ratings": r_cap, "notifications": n_cap},
        "capped": {p: None for p in PARTS},
    }
    if "effectiveness" in wanted:
        eff = effectiveness(session, flt, latest=r_cap)
        out["effectiveness"] = eff
        out["capped"]["effectiveness"] = r_cap is not None and eff["rated_returns"] >= r_cap
    if "channels" in wanted:
        rows = channel_preference(session, flt, latest=n_cap)
        out["channel_preference"] = {
            "channels": rows,
            "recommendations": recommend(session, flt, min_sample, rows=rows)}
    if "timing" in wanted:
        split = time_split(session, flt, latest=n_cap)
        out["time_split"] = split
        read = split[0]["n"] if split else 0
        out["capped"]["timing"] = n_cap is not None and read >= n_cap
    if "channels" in wanted:
        if out["capped"]["timing"] is None:
            out["capped"]["channels"] = n_cap is not None and _count(
                session, flt, n_cap + 1) > n_cap
        else:
            out["capped"]["channels"] = out["capped"]["timing"]  # the same notifications
    return out


def _count(session: Session, flt: InsightFilter, limit: int) -> int:
    sent, params = sent_notifications(flt, limit)
    return int(session.execute(text(f"SELECT count(*) FROM {sent}"), params).scalar_one())
