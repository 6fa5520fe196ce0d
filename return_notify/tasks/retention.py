"""Queue ``maintenance`` (run by beat, daily): the retention purge (``return_notify.pipeline.retention``)."""

from __future__ import annotations

import logging

from return_notify.config.celery import MAINTENANCE_QUEUE
from return_notify.config.settings import get_settings
from return_notify.pipeline.retention import purge_expired
from return_notify.storage.db import session_scope
from return_notify.workers.app import app

log = logging.getLogger(__name__)

RETENTION_TASK = "return_notify.retention"


@app.task(name=RETENTION_TASK, acks_late=True, queue=MAINTENANCE_QUEUE, expires=6 * 3600)
def retention() -> dict[str, int]:
    """Redact personal data older than ``RSN_RETENTION_DAYS`` (0: keep everything).

    Idempotent and batched (short transactions), so a redelivered or overlapping run is
    harmless and never blocks the pipeline for long.
    """
    days = get_settings().retention_days
    if days <= 0:
        return {}
    counts = purge_expired(session_scope, days)
    log.info("retention purge of data older than %d days: %s", days, counts)
    return counts
