"""``GET /v1/stats``: the business KPIs of ``kpis.compute_kpis`` over HTTP, for dashboards.

The same numbers as ``return-notify stats --json`` (its ``kpis`` object) for the caller's
tenant: authenticated with a principal key (``rsnp_…``), action ``stats:read``, which every
role holds. A principal limited to regions or categories sees only returns in its scope
(a region covers its sub-regions); ``?region=`` / ``?category=`` narrow further and must
lie within that scope (403 otherwise). Query: ``since`` (``15m``, ``24h``, ``7d`` or an
ISO time, like the CLI's ``--since``), ``period`` (``day|week|month``, completion cohorts),
``insights`` (``all``, ``none`` or a comma-separated subset of ``effectiveness,channels,
timing``: the ``insights`` object, in the same scope; ``insight_summary``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from return_notify.api.limits import GuardedRoute
from return_notify.api.rbac import Principal, require
from return_notify.core.regions import normalize_category, normalize_region, region_covers
from return_notify.reporting.insight_summary import insights_summary, parse_parts
from return_notify.reporting.kpis import ReturnScope, parse_since
from return_notify.reporting.reads import compute_kpis
from return_notify.storage.db import session_scope

router = APIRouter(prefix="/v1", tags=["stats"], route_class=GuardedRoute)

STATS_READ = "stats:read"


def _invalid(field: str, message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         detail=[{"loc": ["query", field], "msg": message, "type": "value_error"}])


def effective_scope(principal: Principal, region: str | None,
                    category: str | None) -> ReturnScope:
    """The returns ``principal`` may see stats for, narrowed by the requested region and
    category; 403 when a requested one lies outside the principal's scope."""
    try:
        reg = normalize_region(region)
    except ValueError as exc:
        raise _invalid("region", str(exc)) from None
    try:
        cat = normalize_category(category)
    except ValueError as exc:
        raise _invalid("category", str(exc)) from None
    regions: tuple[str, ...] = principal.regions
    if reg is not None:
        if regions and not any(region_covers(p, reg) for p in regions):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=(
                f"{principal.describe()} may not read stats for region {reg}"))
        regions = (reg,)
    categories: tuple[str, ...] = principal.categories
    if cat is not None:
        if categories and cat not in categories:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=(
                f"{principal.describe()} may not read stats for category {cat}"))
        categories = (cat,)
    return ReturnScope(regions, categories)


@router.get("/stats", summary="Business KPIs of the caller's tenant")
def get_stats(
    principal: Annotated[Principal, Depends(require(STATS_READ))],
    since: Annotated[str | None, Query(max_length=64, description=(
        "Only rows since then: 15m, 24h, 7d or an ISO time (like `stats --since`)"))] = None,
    region: Annotated[str | None, Query(max_length=32, description=(
        "Returns in this region and its sub-regions, e.g. EU or EU-DE"))] = None,
    category: Annotated[str | None, Query(max_length=64, description="Product category")]
    = None,
    period: Annotated[Literal["day", "week", "month"], Query(
        description="Cohort period of the completion rate")] = "week",
    insights: Annotated[str, Query(max_length=64, description=(
        "Insights to add as `insights`: all, none, or any of effectiveness, channels, timing "
        "(comma-separated); each reads a bounded set (the window's latest ratings / "
        "notifications, RSN_STATS_INSIGHT_*)"))] = "all",
) -> dict[str, Any]:
    """Delivery success by channel/provider/region, occurred_at → sent/delivered latency,
    return completion rate and funnel, engagement, load pattern and throughput: the
    ``kpis`` object of ``return-notify stats --json --tenant <yours>``; plus ``insights``:
    satisfaction by time to status update and by number of updates, channel preference
    with the recommended order, and source lag vs pipeline (its ``insights`` object)."""
    try:
        since_at = parse_since(since)
    except ValueError as exc:
        raise _invalid("since", str(exc)) from None
    try:
        parts = parse_parts(insights)
    except ValueError as exc:
        raise _invalid("insights", str(exc)) from None
    scope = effective_scope(principal, region, category)
    with session_scope() as session:
        out = compute_kpis(session, since=since_at, tenant=principal.tenant, period=period,
                           scope=scope)
        if parts:
            out["insights"] = insights_summary(session, since=since_at,
                                               tenant=principal.tenant, scope=scope,
                                               parts=parts)
        return out
