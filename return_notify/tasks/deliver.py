"""Queues ``email``, ``sms``, ``inapp``: the deliver task (``return_notify.deliver``).

A task delivers the ids of its own message plus those of deliver messages of its channel
waiting in the queue (``workers/drain.py``, up to ``RSN_DELIVER_DRAIN_IDS``; transactional
priority first), as one batch; drained messages are acknowledged once every outcome is
recorded and the follow-up messages (retries, SMS-to-email fallbacks) are out.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy.exc import OperationalError

from return_notify.channels.registry import get_channel
from return_notify.config.celery import DELIVER_TASK
from return_notify.config.settings import get_settings
from return_notify.observability.logs import bind_task_ids, ids_or_list, log_context
from return_notify.observability.metrics import observe_deliver, observe_drained
from return_notify.pipeline.deliver import DeliverOutcome, deliver_batch, deliver_channels
from return_notify.pipeline.ratelimit import get_limiter
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries
from return_notify.workers.drain import Drained, announce, drainer, step_for

log = logging.getLogger(__name__)

#: states whose per-delivery log line is a warning: the customer was not told
_BAD = frozenset({"failed", "dead"})
#: drained per call to Redis; the loop stops at the id cap or an empty queue
_DRAIN_STEP = 16


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
    started = time.monotonic()
    settings = get_settings()
    ids = [int(i) for i in delivery_ids]
    drained = _drain(channel, len(ids), settings.deliver_drain_ids)
    for m in drained:
        ids += [int(i) for i in m.args[1]]
    try:
        outcome = deliver_batch(session_scope, channel, ids, get_channel(channel), settings,
                                limiter=get_limiter(settings), started_at=started)
        _follow_up(channel, outcome)
    except BaseException:
        _settle(channel, drained, ok=False)  # back to the queue: the rows are still due
        raise
    _settle(channel, drained, ok=True)
    announce(self, drained, time.monotonic() - started)
    observe_deliver(channel, outcome)
    log_outcomes(channel, outcome)
    summary: dict[str, Any] = {"claimed": outcome.claimed, **dict(outcome.states)}
    if drained:
        summary["drained"] = len(drained)
    return summary


def deliver_now(by_channel: dict[str, list[int]], urgent: set[int] | None = None,
                started_at: float | None = None) -> dict[str, dict[str, Any] | None]:
    """Deliver ``by_channel``'s ids in this process, without a deliver message: the ingest
    task's inline channels (``RSN_INGEST_INLINE_CHANNELS``), right after its commit, with
    one claim for all of them. Any error sends a channel's ids as a deliver message instead
    (the rows are committed: one claimed before the error is held by its lease, a message
    that cannot be sent is the sweeper's); returns each channel's outcome summary, or None
    for a channel that went to the queue (``urgent``: the ingest's urgent ids, which keep
    their priority there; ``started_at``: when the ingest task started, for the time
    budget of the sends)."""
    settings = get_settings()
    failed: dict[str, BaseException] = {}
    out: dict[str, dict[str, Any] | None] = {}

    def carry_on(channel: str, exc: BaseException) -> bool:
        failed[channel] = exc
        # the task's soft time limit: stop calling providers before the hard one kills us
        return not isinstance(exc, SoftTimeLimitExceeded)

    try:
        outcomes = deliver_channels(
            session_factory=session_scope, settings=settings, limiter=get_limiter(settings),
            batches={ch: (ids, get_channel(ch)) for ch, ids in by_channel.items()},
            on_error=carry_on, started_at=started_at)
    except Exception as exc:  # noqa: BLE001 - never undo the ingest: the queue takes over
        outcomes = {}
        failed = {ch: exc for ch in by_channel}
    for channel, ids in by_channel.items():
        if channel in failed:
            _to_queue(channel, ids, urgent, failed[channel])
            out[channel] = None
            continue
        outcome = outcomes[channel]
        try:
            _follow_up(channel, outcome)
        except Exception as exc:  # noqa: BLE001 - the rows are recorded; the sweeper
            # re-enqueues what a lost follow-up message would have carried
            log.warning("could not enqueue the follow-ups of %d inline %s deliveries",
                        len(ids), channel, exc_info=exc)
        observe_deliver(channel, outcome)
        log_outcomes(channel, outcome)
        out[channel] = {"claimed": outcome.claimed, **dict(outcome.states)}
    return out


def _to_queue(channel: str, ids: list[int], urgent: set[int] | None,
              exc: BaseException) -> None:
    log.warning("could not deliver %d %s deliveries inline; sending a deliver message",
                len(ids), channel, exc_info=exc)
    try:
        enqueue_deliveries({channel: ids}, urgent=urgent)
    except Exception:  # noqa: BLE001
        log.warning("could not enqueue them either; the sweeper re-enqueues them after "
                    "RSN_LEASE_S", exc_info=True)


def _follow_up(channel: str, outcome: DeliverOutcome) -> None:
    """Short waits ride a Celery countdown (well under the visibility timeout); longer ones
    stay in PostgreSQL (next_attempt_at) for the sweeper. Undeliverable SMS go by email."""
    by_delay: dict[float, list[int]] = defaultdict(list)
    for did, wait in outcome.retry_soon:
        # round up: a message that arrives before next_attempt_at finds nothing to claim
        by_delay[max(0.05, math.ceil(wait * 20) / 20)].append(did)
    for delay, ids in by_delay.items():
        enqueue_deliveries({channel: ids}, countdown=delay)
    if outcome.fallback_email:
        enqueue_deliveries({"email": outcome.fallback_email}, urgent=set(outcome.fallback_email))


def _drain(channel: str, have: int, cap: int) -> list[Drained]:
    """Deliver messages of ``channel`` waiting behind this one, up to ``cap`` ids (or within
    one message of it)."""
    if cap <= have:
        return []
    out: list[Drained] = []
    # ids per message so far (this task's own message first): the cap counts ids
    seen_messages, seen_ids = 1, max(have, 1)
    try:
        d = drainer(channel, DELIVER_TASK)
        while have < cap:
            want = step_for(cap - have, seen_ids / seen_messages, _DRAIN_STEP)
            step = d.take(want)
            foreign = [m for m in step if not _is_batch_of(m, channel)]
            if foreign:  # not a deliver call of this channel: Celery's consumer takes it
                d.restore(foreign)
            step = [m for m in step if m not in foreign]
            out += step
            ids = sum(len(m.args[1]) for m in step)
            have += ids
            seen_messages, seen_ids = seen_messages + len(step), seen_ids + ids
            # a foreign message went back to the front of the queue: the next call would
            # take it again, so stop here (Celery's consumer takes it)
            if len(step) + len(foreign) < want or foreign:
                break
    except Exception:  # noqa: BLE001 - Redis trouble: work on what we have, lose nothing
        log.warning("could not drain waiting %s deliver messages", channel, exc_info=True)
    if out:
        observe_drained(DELIVER_TASK, len(out))
    return out


def _is_batch_of(message: Drained, channel: str) -> bool:
    args = message.args
    return (len(args) == 2 and args[0] == channel and isinstance(args[1], list)
            and all(isinstance(i, int) for i in args[1]))


def _settle(channel: str, drained: list[Drained], *, ok: bool) -> None:
    if not drained:
        return
    try:
        d = drainer(channel, DELIVER_TASK)
        (d.ack if ok else d.restore)(drained)
    except Exception:  # noqa: BLE001 - they come back after the visibility timeout; the
        # claim's state check makes a second delivery of the same ids send nothing twice
        log.warning("could not settle %d drained deliver messages", len(drained), exc_info=True)


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
