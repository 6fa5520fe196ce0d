"""Queues ``email``, ``sms``, ``inapp``: the deliver task (``return_notify.deliver``)."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from typing import Any

from sqlalchemy.exc import OperationalError

from return_notify.channels.registry import get_channel
from return_notify.config.celery import DELIVER_TASK
from return_notify.config.settings import get_settings
from return_notify.metrics import observe_deliver
from return_notify.pipeline.deliver import deliver_batch
from return_notify.ratelimit import get_limiter
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries

log = logging.getLogger(__name__)


@app.task(
    name=DELIVER_TASK,
    bind=True,
    acks_late=True,
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,
)
def deliver(self: Any, channel: str, delivery_ids: list[int]) -> dict[str, Any]:
    settings = get_settings()
    outcome = deliver_batch(session_scope, channel, [int(i) for i in delivery_ids],
                            get_channel(channel), settings, limiter=get_limiter(settings))
    observe_deliver(channel, outcome)
    # Short waits ride a Celery countdown (well under the visibility timeout); longer ones
    # stay in PostgreSQL (next_attempt_at) for the sweeper.
    by_delay: dict[float, list[int]] = defaultdict(list)
    for did, wait in outcome.retry_soon:
        # round up: a message that arrives before next_attempt_at finds nothing to claim
        by_delay[max(0.05, math.ceil(wait * 20) / 20)].append(did)
    for delay, ids in by_delay.items():
        enqueue_deliveries({channel: ids}, countdown=delay)
    if outcome.fallback_email:
        enqueue_deliveries({"email": outcome.fallback_email}, urgent=set(outcome.fallback_email))
    return {"claimed": outcome.claimed, **dict(outcome.states)}
