"""Queue ``events``: the ingest task (stable name ``return_notify.ingest``).

A task ingests the events of its own message plus those of event messages waiting in the
queue (``workers/drain.py``, up to ``RSN_INGEST_DRAIN_EVENTS``), in one transaction; a
failing event is isolated (``pipeline.ingest.ingest_isolated``) and recorded in
``rejected_events``, never taking the batch's other events with it. Drained messages are
acknowledged only after the commit and the deliver messages are out.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import OperationalError

from return_notify.config.celery import EVENTS_QUEUE, INGEST_TASK
from return_notify.config.settings import get_settings
from return_notify.observability.logs import bind_task_ids, ids_or_list, log_context
from return_notify.observability.metrics import (
    observe_drained,
    observe_ingest,
    observe_ingest_gate,
)
from return_notify.pipeline.ingest import ingest_isolated
from return_notify.storage.db import session_scope
from return_notify.tasks.deliver import deliver_now
from return_notify.workers import ingest_gate
from return_notify.workers.app import app, consumes, enqueue_deliveries
from return_notify.workers.drain import Drained, announce, drainer, step_for

log = logging.getLogger(__name__)

#: drained per call to Redis; the loop stops at the event cap or an empty queue
_DRAIN_STEP = 32


@app.task(
    name=INGEST_TASK,
    bind=True,
    acks_late=True,
    # Database unreachable, deadlock, serialization failure: the batch is idempotent
    # (unique event ids), so try again; never lose events while PostgreSQL is down.
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,
)
def ingest(self: Any, events: Any) -> dict[str, Any]:
    started = time.monotonic()
    own = events if isinstance(events, list) else [events]
    settings = get_settings()
    inline_out: dict[str, dict[str, Any] | None] = {}
    # one batch at a time per worker while the queue is short: what arrives during another
    # batch (its ingest and its inline deliveries) joins this one instead of starting a
    # batch of its own (workers/ingest_gate.py)
    with ingest_gate.hold(_backlog, max_wait_s=settings.ingest_gate_wait_ms / 1000,
                          backlog_limit=settings.ingest_gate_backlog) as gate:
        drained = _drain(len(own))
        batch = own + [e for m in drained for e in _events_of(m)]
        try:
            result = ingest_isolated(session_scope, batch)
            inline = _inline(result.deliveries)
            enqueue_deliveries({ch: ids for ch, ids in result.deliveries.items()
                                if ch not in inline}, urgent=result.urgent)
        except BaseException:
            # the caller retries its own message; the drained ones go back to the queue now
            _give_back(drained)
            raise
        _ack(drained)
        # committed and acknowledged: the inline channels' deliveries go out from here
        if inline:
            inline_out = deliver_now(inline, result.urgent, started_at=started)
    observe_ingest_gate(gate)
    announce(self, drained, time.monotonic() - started)
    observe_ingest(result)
    summary = result.summary()
    if drained:
        summary["drained"] = len(drained)
    summary["gate"] = gate
    for channel, done in inline_out.items():
        summary[f"inline_{channel}"] = done
    created = sorted(i for ids in result.deliveries.values() for i in ids)
    with log_context(**ids_or_list("delivery_id", created)):
        log.info("ingested %s", summary)
    return summary


#: channels whose send calls no provider (a write to the inbox): inline whatever the batch
_NO_PROVIDER = frozenset({"inapp"})


def _inline(deliveries: dict[str, list[int]]) -> dict[str, list[int]]:
    """The deliveries this task sends itself: those of ``RSN_INGEST_INLINE_CHANNELS`` whose
    queue this worker also consumes (a worker started for other queues leaves them to the
    channel's own workers). A provider channel goes inline only in a small batch
    (``RSN_INGEST_INLINE_MAX``): at low and steady load that saves each notification a
    message, a hop and a task; a large batch is a backlog, whose deliver messages keep the
    priorities (transactional first) and spread the provider calls over the pool."""
    settings = get_settings()
    wanted = {c.strip() for c in settings.ingest_inline_channels.split(",") if c.strip()}
    # in-app first: it is the cheapest, and the provider calls then follow in one go
    order = sorted(deliveries, key=lambda ch: ch not in _NO_PROVIDER)
    return {ch: deliveries[ch] for ch in order
            if deliveries[ch] and ch in wanted and consumes(ch)
            and (ch in _NO_PROVIDER or len(deliveries[ch]) <= settings.ingest_inline_max)}


def _drain(have: int) -> list[Drained]:
    """Event messages waiting behind this one, up to ``RSN_INGEST_DRAIN_EVENTS`` events (or
    within one message of it)."""
    cap = get_settings().ingest_drain_events
    if cap <= have:
        return []
    out: list[Drained] = []
    # events per message so far (this task's own message first): a message holds one
    # event or a producer's batch (RSN_INGEST_BATCH_SIZE), so the cap counts events
    seen_messages, seen_events = 1, max(have, 1)
    try:
        d = drainer(EVENTS_QUEUE, INGEST_TASK)
        while have < cap:
            want = step_for(cap - have, seen_events / seen_messages, _DRAIN_STEP)
            step = d.take(want)
            out += step
            events = sum(len(_events_of(m)) for m in step)
            have += events
            seen_messages, seen_events = seen_messages + len(step), seen_events + events
            if len(step) < want:
                break
    except Exception:  # noqa: BLE001 - Redis trouble: work on what we have, lose nothing
        log.warning("could not drain waiting event messages; ingesting this one alone",
                    exc_info=True)
    if out:
        observe_drained(INGEST_TASK, len(out))
    return out


def _backlog() -> int:
    """Event messages waiting in the queue (the gate does not wait in a backlog)."""
    return drainer(EVENTS_QUEUE, INGEST_TASK).waiting()


def _events_of(message: Drained) -> list[Any]:
    arg = message.args[0] if message.args else message.kwargs.get("events", [])
    return arg if isinstance(arg, list) else [arg]


def _ack(drained: list[Drained]) -> None:
    if drained:
        try:
            drainer(EVENTS_QUEUE, INGEST_TASK).ack(drained)
        except Exception:  # noqa: BLE001 - they come back after the visibility timeout:
            # ingesting them again is a no-op (event ids deduplicate)
            log.warning("could not acknowledge %d drained messages", len(drained), exc_info=True)


def _give_back(drained: list[Drained]) -> None:
    if drained:
        try:
            drainer(EVENTS_QUEUE, INGEST_TASK).restore(drained)
        except Exception:  # noqa: BLE001 - restored after the visibility timeout instead
            log.warning("could not give back %d drained messages", len(drained), exc_info=True)


def _task_ids(args: Any, kwargs: Any) -> dict[str, Any]:
    events = args[0] if args else kwargs.get("events")
    events = events if isinstance(events, list) else [events]
    return ids_or_list("event_id", [e["event_id"] for e in events
                                    if isinstance(e, dict) and e.get("event_id")])


# every line of an ingest task, Celery's own included, carries its event id(s)
bind_task_ids(INGEST_TASK, _task_ids)
