"""Queue ``retention`` (run by beat; slow housekeeping, never beside the sweeper): monthly
partitions created ahead, whole months dropped or archived after ``RSN_HISTORY_MONTHS``
(``return_notify.pipeline.history``), and the KPI aggregates rolled up
(``return_notify.reporting.rollup``)."""

from __future__ import annotations

import logging
from typing import Any

from return_notify.config.celery import HISTORY_TASK, RETENTION_QUEUE, ROLLUP_TASK
from return_notify.config.settings import get_settings
from return_notify.pipeline.history import run_maintenance
from return_notify.reporting.rollup import rollup
from return_notify.storage.db import get_engine
from return_notify.workers.app import RETRY_LOST_DATABASE, app

log = logging.getLogger(__name__)


@app.task(name=HISTORY_TASK, acks_late=True, queue=RETENTION_QUEUE, expires=6 * 3600,
          **RETRY_LOST_DATABASE)
def history() -> dict[str, Any]:
    """Create the coming months' partitions, then drop (or archive and drop) the months
    older than ``RSN_HISTORY_MONTHS``. Idempotent: a rerun finds nothing left to do, and
    a run that stopped half-way is finished by the next one."""
    s = get_settings()
    with get_engine().connect() as conn:
        # the months about to go are in the aggregates first: their KPIs stay
        rollup(conn, hourly_days=s.stats_hourly_days, daily_months=s.stats_daily_months)
        out = run_maintenance(conn, s.history_months, s.partitions_ahead, s.archive_dir)
    if out["created"] or out["dropped"]:
        log.info("history maintenance: %s", out)
    return out


@app.task(name=ROLLUP_TASK, acks_late=True, queue=RETENTION_QUEUE,
          expires=max(30.0, get_settings().stats_rollup_interval_s), **RETRY_LOST_DATABASE)
def stats_rollup() -> dict[str, Any]:
    """Roll the KPI aggregates up to the current hour (a first run on a large history
    works through it in steps of a few minutes, run after run)."""
    s = get_settings()
    with get_engine().connect() as conn:
        out = rollup(conn, hourly_days=s.stats_hourly_days, daily_months=s.stats_daily_months,
                     budget_s=max(30.0, min(300.0, s.stats_rollup_interval_s * 4))).as_dict()
    if out["hours"] > 2:
        log.info("stats rollup: %s", out)
    return out
