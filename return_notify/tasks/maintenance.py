"""Queue ``maintenance`` (run by beat): the sweeper, and a no-op for the benchmark."""

from __future__ import annotations

import logging
from typing import Any

from return_notify.config.celery import NOOP_TASK, SWEEP_TASK
from return_notify.config.settings import get_settings
from return_notify.pipeline.deliver_record import apply_parked_outcomes
from return_notify.pipeline.maintenance import due_deliveries
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries

log = logging.getLogger(__name__)


@app.task(name=SWEEP_TASK, acks_late=True, expires=60)
def sweep() -> dict[str, int]:
    restored = restore_unacked()
    settings = get_settings()
    # outcomes parked during a database outage first: their rows are sent, not due
    parked = apply_parked_outcomes(session_scope, settings)
    with session_scope() as session:
        due = due_deliveries(session, settings.lease_s)
    if due:
        enqueue_deliveries(due)
        log.info("sweep re-enqueued %s", {k: len(v) for k, v in due.items()})
    return {**{k: len(v) for k, v in due.items()}, **({"restored": restored} if restored else {}),
            **({"parked_outcomes": parked} if parked else {})}


def restore_unacked() -> int:
    """Requeue broker messages unacked for longer than the visibility timeout: those of a
    killed worker, or those a worker held when its Redis connection dropped (ingest batches
    live only in Redis). kombu itself does this when a worker starts and then only on
    every 10th 10-second tick (~100 s); the sweep does it every RSN_SWEEP_INTERVAL_S."""
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        qos: Any = getattr(channel, "qos", None)
        if not hasattr(qos, "restore_visible"):  # not the Redis transport
            return 0
        before = int(channel.client.hlen(qos.unacked_key))
        qos.restore_visible(num=None)  # all of them, under kombu's own Redis mutex
        restored = before - int(channel.client.hlen(qos.unacked_key))  # others ack meanwhile
    if restored > 0:
        log.warning("requeued %d broker messages unacked beyond the visibility timeout", restored)
    return max(0, restored)


@app.task(name=NOOP_TASK, acks_late=True)
def noop(*_: Any, **__: Any) -> None:
    """Does nothing: the benchmark measures bare Celery throughput with it."""
