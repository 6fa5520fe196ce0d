"""Publish return events from an existing backend: ``publish`` and ``publish_many``.

Needs only the broker URL (``RSN_BROKER_URL``). Imports nothing that needs the database,
Jinja2 or provider SDKs, so it is cheap to embed in a returns portal, WMS or ERP.

    from return_notify.producer import publish
    publish({"event_id": "wms-1", "tenant": "acme", ...})
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celery import Celery

from return_notify.config.broker_client import BrokerAMQP
from return_notify.config.celery import EVENTS_QUEUE, INGEST_TASK, celery_config, task_argsrepr
from return_notify.config.settings import Settings, get_settings
from return_notify.errors import ConfigurationError, PublishError
from return_notify.events import ReturnEvent, parse_event

log = logging.getLogger(__name__)

_lock = threading.Lock()
_apps: dict[tuple[str, str], Celery] = {}
#: Apps whose events queue was declared once already (see ``publish_raw_batches``).
_declared: set[int] = set()

#: Broker outage tolerance: ~0.2 + 0.4 + ... capped at 1 s a try, 5 tries, then PublishError.
DEFAULT_RETRY_POLICY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.4,
                        "interval_max": 1.0}


def _app(settings: Settings) -> Celery:
    if not settings.broker_url:
        raise ConfigurationError("RSN_BROKER_URL is not set: the producer needs the Redis URL")
    key = (settings.broker_url, settings.redis_key_prefix)
    with _lock:
        app = _apps.get(key)
        if app is None:
            app = Celery("return_notify_producer", set_as_current=False, amqp=BrokerAMQP)
            app.conf.update(celery_config(settings))
            # No "task-sent" monitoring event per publish: it doubled the cost of a single
            # publish in a retailer's backend; Flower still sees every task from the workers'
            # received/started/succeeded events.
            app.conf.task_send_sent_event = False
            _apps[key] = app
        return app


def _as_payload(event: ReturnEvent | Mapping[str, Any]) -> dict[str, Any]:
    model = event if isinstance(event, ReturnEvent) else parse_event(dict(event))
    return model.model_dump(mode="json", exclude_none=True)


def publish(event: ReturnEvent | Mapping[str, Any], *, settings: Settings | None = None) -> str:
    """Validate one event and hand it to the broker; returns its ``event_id``.

    Raises ``EventValidationError`` for a bad event and ``PublishError`` when the broker
    stays unreachable after bounded retries (resending later is safe: ids deduplicate).
    """
    publish_many([event], settings=settings)
    return str(event.event_id if isinstance(event, ReturnEvent) else event["event_id"])


def publish_raw_batches(
    batches: Iterable[list[dict[str, Any]]],
    *,
    settings: Settings | None = None,
    retry_policy: Mapping[str, float] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Send already-validated JSON payloads, one Celery message per batch."""
    settings = settings or get_settings()
    app = _app(settings)
    sent = 0
    # Celery declares the queue again with every message (a no-op on Redis after the first:
    # a binding copied and looked up, a tenth of a publish); the messages go straight to
    # the queue's list, so once per app is enough
    declare: list[Any] | None = [] if id(app) in _declared else None
    with app.producer_or_acquire() as producer:
        for batch in batches:
            if not batch:
                continue
            try:
                app.send_task(
                    INGEST_TASK,
                    args=[batch],
                    # Flower shows event ids, never the events (addresses, numbers, names)
                    argsrepr=task_argsrepr(INGEST_TASK, [batch]), kwargsrepr="{}",
                    queue=EVENTS_QUEUE,
                    routing_key=EVENTS_QUEUE,
                    producer=producer,
                    retry=True,
                    retry_policy=dict(retry_policy or DEFAULT_RETRY_POLICY),
                    declare=declare,
                )
                _declared.add(id(app))
                declare = []
            except Exception as exc:  # kombu.OperationalError and friends
                raise PublishError(
                    f"broker {_safe_url(settings.broker_url)} unreachable after retries: {exc}. "
                    f"{sent} events were published before the failure; resending is safe.",
                    published=sent,
                ) from exc
            sent += len(batch)
            if on_batch:
                on_batch(len(batch))
    return sent


def publish_many(
    events: Iterable[ReturnEvent | Mapping[str, Any]],
    *,
    settings: Settings | None = None,
    batch_size: int | None = None,
    retry_policy: Mapping[str, float] | None = None,
) -> int:
    """Validate and publish events in batches (one broker message per batch).

    All events are validated before anything is sent; returns the number published.
    """
    settings = settings or get_settings()
    size = batch_size or settings.ingest_batch_size
    payloads = [_as_payload(e) for e in events]
    batches = [payloads[i : i + size] for i in range(0, len(payloads), size)]
    return publish_raw_batches(batches, settings=settings, retry_policy=retry_policy)


def _safe_url(url: str | None) -> str:
    if not url:
        return "(unset)"
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
