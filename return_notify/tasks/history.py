"""Queue ``maintenance`` (run by beat): monthly partitions created ahead and whole months
dropped or archived after ``RSN_HISTORY_MONTHS`` (``return_notify.pipeline.history``)."""

from __future__ import annotations

import logging
from typing import Any

from return_notify.config.celery import HISTORY_TASK, MAINTENANCE_QUEUE
from return_notify.config.settings import get_settings
from return_notify.pipeline.history import run_maintenance
from return_notify.storage.db import get_engine
from return_notify.workers.app import app

log = logging.getLogger(__name__)


@app.task(name=HISTORY_TASK, acks_late=True, queue=MAINTENANCE_QUEUE, expires=6 * 3600)
def history() -> dict[str, Any]:
    """Create the coming months' partitions, then drop (or archive and drop) the months
    older than ``RSN_HISTORY_MONTHS``. Idempotent: a rerun finds nothing left to do, and
    a run that stopped half-way is finished by the next one."""
    s = get_settings()
    with get_engine().connect() as conn:
        out = run_maintenance(conn, s.history_months, s.partitions_ahead, s.archive_dir)
    if out["created"] or out["dropped"]:
        log.info("history maintenance: %s", out)
    return out
