"""Queue ``retention`` (run by beat, daily at ``RSN_RETENTION_AT``): the retention purge
(``return_notify.pipeline.retention``), with its own time limits (``config.celery``)."""

from __future__ import annotations

import logging

from return_notify.config.celery import RETENTION_QUEUE, RETENTION_TASK
from return_notify.config.settings import get_settings
from return_notify.pipeline.retention import purge_expired
from return_notify.storage.db import session_scope
from return_notify.workers.app import RETRY_LOST_DATABASE, app

log = logging.getLogger(__name__)

__all__ = ["RETENTION_TASK", "retention"]


# Acked when it starts: a run may outlast the visibility timeout, and a late ack would let
# Redis hand the same run to a second worker meanwhile. A run lost to a crash is harmless.
@app.task(name=RETENTION_TASK, acks_late=False, queue=RETENTION_QUEUE, expires=6 * 3600,
          **RETRY_LOST_DATABASE)
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
