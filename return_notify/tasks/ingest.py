"""Queue ``events``: the ingest task (stable name ``return_notify.ingest``)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError

from return_notify.config.celery import INGEST_TASK
from return_notify.errors import EventValidationError
from return_notify.observability.logs import bind_task_ids, ids_or_list, log_context
from return_notify.observability.metrics import observe_ingest
from return_notify.pipeline.ingest import IngestResult, ingest_batch, record_rejected
from return_notify.storage.db import session_scope
from return_notify.workers.app import app, enqueue_deliveries

log = logging.getLogger(__name__)


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
def ingest(self: Any, events: list[Any]) -> dict[str, Any]:
    if not isinstance(events, list):
        events = [events]
    try:
        with session_scope() as session:
            result = ingest_batch(session, events)
    except OperationalError:
        raise
    except DBAPIError:
        if len(events) == 1:
            _reject_poison(events[0])
            return {"rejected": 1}
        result = _one_by_one(events)
    enqueue_deliveries(dict(result.deliveries), urgent=result.urgent)
    observe_ingest(result)
    summary = result.summary()
    created = sorted(i for ids in result.deliveries.values() for i in ids)
    with log_context(**ids_or_list("delivery_id", created)):
        log.info("ingested %s", summary)
    return summary


def _task_ids(args: Any, kwargs: Any) -> dict[str, Any]:
    events = args[0] if args else kwargs.get("events")
    events = events if isinstance(events, list) else [events]
    return ids_or_list("event_id", [e["event_id"] for e in events
                                    if isinstance(e, dict) and e.get("event_id")])


# every line of an ingest task, Celery's own included, carries its event id(s)
bind_task_ids(INGEST_TASK, _task_ids)


def _one_by_one(events: list[Any]) -> IngestResult:
    """A batch failed on one bad row: isolate it, keep everything else."""
    total = IngestResult(received=len(events))
    for raw in events:
        try:
            with session_scope() as session:
                r = ingest_batch(session, [raw])
        except OperationalError:
            raise
        except DBAPIError:
            _reject_poison(raw)
            total.rejected += 1
            continue
        total.accepted += r.accepted
        total.duplicates += r.duplicates
        total.rejected += r.rejected
        for ch, ids in r.deliveries.items():
            total.deliveries[ch].extend(ids)
        total.urgent |= r.urgent
    return total


def _reject_poison(raw: Any) -> None:
    log.exception("event could not be stored; recorded as rejected")
    with session_scope() as session:
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        record_rejected(session, raw, EventValidationError(
            [{"field": "(event)", "message": "the database refused this event", "type": "db"}],
            event_id=str(event_id) if event_id else None,
        ))
