"""The KPIs for any window, at a cost that does not grow with history: ``stats``,
``report`` and ``GET /v1/stats`` call these.

A window shorter than ``RSN_STATS_EXACT_WINDOW_S`` or a database never rolled up is
computed from the raw rows, exactly as before (``kpis.compute_kpis``,
``throughput.pipeline_stats``), and so is a region/category scope until the scoped
aggregates have caught up with the others (a database rolled up before migration 0013);
any other window reads the aggregates plus the raw rows not rolled up yet
(``rolled.py``), in one REPEATABLE READ snapshot so the watermark, the aggregates and the
raw rows agree.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.config.settings import get_settings
from return_notify.reporting import kpis, rolled, throughput
from return_notify.reporting.kpis import PERIODS, ReturnScope
from return_notify.reporting.window import Window


def plan(session: Session, since: datetime | None, tenant: str | None,
         scope: ReturnScope | None = None, now: datetime | None = None
         ) -> tuple[Window, int | None] | None:
    """The aggregate window to read and the tenant's id, or None: read the raw rows."""
    if not session.in_transaction():  # one snapshot for every statement that follows
        session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
    state: dict[str, datetime] = {str(name): at for name, at in session.execute(text(
        "SELECT name, at FROM stats_state WHERE name IN ('watermark', 'hourly_since', "
        "'daily_since', 'scope_watermark')"))}
    watermark = state.get("watermark")
    if watermark is None or (scope and state.get("scope_watermark") != watermark):
        return None
    if since is not None:
        now = now or session.execute(text("SELECT now()")).scalar_one()
        if since >= now - timedelta(seconds=get_settings().stats_exact_window_s):
            return None
    tid = None
    if tenant:
        tid = session.execute(text("SELECT id FROM tenants WHERE slug = :s"),
                              {"s": tenant}).scalar()
        if tid is None:
            return None  # nothing to count: the raw queries say so at no cost
    session.execute(text("SET LOCAL jit = off"))  # compiling costs more than these reads
    return Window(since, watermark, state.get("hourly_since"), state.get("daily_since")), tid


def compute_kpis(session: Session, *, since: datetime | None = None, tenant: str | None = None,
                 period: str = "week", scope: ReturnScope | None = None) -> dict[str, Any]:
    """``kpis.compute_kpis``'s numbers (see ``rolled`` for what differs)."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    found = plan(session, since, tenant, scope)
    if found is None:
        return kpis.compute_kpis(session, since=since, tenant=tenant, period=period, scope=scope)
    win, tid = found
    return rolled.compute_kpis(session, win, tid, tenant, period, scope or None)


def pipeline_stats(session: Session, *, since: datetime | None = None,
                   tenant: str | None = None) -> dict[str, Any]:
    """``throughput.pipeline_stats``'s numbers."""
    found = plan(session, since, tenant)
    if found is None:
        return throughput.pipeline_stats(session, since=since, tenant=tenant)
    win, tid = found
    return rolled.pipeline_stats(session, win, tid, tenant)
