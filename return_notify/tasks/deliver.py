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
from return_notify.observability.logs import bind_task_ids, ids_or_list, log_context
from return_notify.observability.metrics import observe_deliver
from return_notify.pipeline.deliver import DeliverOutcome, deliver_batch
from return_notify.pipeline.ratelimit import get_limiter
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries

log = logging.getLogger(__name__)

#: states whose per-delivery log line is a warning: the customer was not told
_BAD = frozenset({"failed", "dead"})


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
    log_outcomes(channel, outcome)
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


def _task_ids(args: Any, kwargs: Any) -> dict[str, Any]:
    channel = args[0] if args else kwargs.get("channel")
    ids = args[1] if len(args) > 1 else kwargs.get("delivery_ids") or []
    return {"channel": channel, **ids_or_list("delivery_id", [int(i) for i in ids])}


# every line of a deliver task, Celery's own included, carries its delivery id(s)
bind_task_ids(DELIVER_TASK, _task_ids)


def log_outcomes(channel: str, outcome: DeliverOutcome) -> None:
    """One line per claimed delivery, bound to its delivery_id and event_id: the state it
    moved to, the provider that answered and why it did not go out (errors masked)."""
    calls = {a["delivery_id"]: a for a in outcome.attempts}
    for did, (state, reason) in outcome.results.items():
        level = logging.WARNING if state in _BAD else logging.INFO
        if not log.isEnabledFor(level):
            continue
        call = calls.get(did) or {}
        via = f" via {call['provider']}" if call.get("provider") else ""
        why = f": {reason[:300]}" if reason and state != "sent" else ""
        with log_context(delivery_id=did, event_id=outcome.event_ids.get(did)):
            log.log(level, "%s delivery %s %s%s%s", channel, did, state, via, why)
