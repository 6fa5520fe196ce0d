"""Queue ``maintenance`` (run by beat): the sweeper, and a no-op for the benchmark."""

from __future__ import annotations

import logging
from typing import Any

from return_notify.config.celery import NOOP_TASK, SWEEP_TASK
from return_notify.config.settings import get_settings
from return_notify.pipeline.maintenance import due_deliveries
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries

log = logging.getLogger(__name__)


@app.task(name=SWEEP_TASK, acks_late=True, expires=60)
def sweep() -> dict[str, int]:
    with session_scope() as session:
        due = due_deliveries(session, get_settings().lease_s)
    if due:
        enqueue_deliveries(due)
        log.info("sweep re-enqueued %s", {k: len(v) for k, v in due.items()})
    return {k: len(v) for k, v in due.items()}


@app.task(name=NOOP_TASK, acks_late=True)
def noop(*_: Any, **__: Any) -> None:
    """Does nothing: the benchmark measures bare Celery throughput with it."""
