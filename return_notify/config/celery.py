"""Celery configuration for Redis, each setting with the reason it is set.

Shared by the worker app and the lightweight producer app so both agree on the wire format.
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from kombu import Exchange, Queue

from return_notify.config.settings import Settings

INGEST_TASK = "return_notify.ingest"
DELIVER_TASK = "return_notify.deliver"
SWEEP_TASK = "return_notify.sweep"
NOOP_TASK = "return_notify.noop"
HISTORY_TASK = "return_notify.history"
ROLLUP_TASK = "return_notify.stats_rollup"

EVENTS_QUEUE = "events"
CHANNEL_QUEUES = ("email", "sms", "inapp")
MAINTENANCE_QUEUE = "maintenance"
ALL_QUEUES = (EVENTS_QUEUE, *CHANNEL_QUEUES, MAINTENANCE_QUEUE)


def transport_options(settings: Settings) -> dict[str, Any]:
    opts: dict[str, Any] = {
        # Redis re-delivers an unacked message after this many seconds: it must exceed the
        # longest task runtime plus the longest countdown we ever use (max_countdown_s).
        "visibility_timeout": settings.visibility_timeout_s,
        # Message priorities on Redis: one list per step, served 0 first (transactional
        # deliveries at 0, retries and sweeps at 3, informational at 6).
        "priority_steps": [0, 3, 6, 9],
    }
    if settings.redis_key_prefix:
        # Every key (queues, unacked hash, bindings) lives under this prefix, so several
        # deployments or test runs share one Redis without seeing each other's messages.
        opts["global_keyprefix"] = settings.redis_key_prefix
    return opts


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings of every process (workers, beat, producer)."""
    if settings.max_countdown_s + settings.task_time_limit_s >= settings.visibility_timeout_s:
        raise ValueError(
            "RSN_VISIBILITY_TIMEOUT_S must exceed RSN_MAX_COUNTDOWN_S + RSN_TASK_TIME_LIMIT_S, "
            "or Redis re-delivers waiting messages and they run twice"
        )
    default_exchange = Exchange("return_notify", type="direct")
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": transport_options(settings),
        # Celery docs: set it for the result backend options too (no backend here, harmless).
        "result_backend_transport_options": transport_options(settings),
        # JSON only: never unpickle what arrives from a shared broker.
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        # Results are in PostgreSQL (deliveries); a result backend would only cost round trips.
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        # Ack after the task ran: a worker that dies mid-task gets its message re-delivered.
        # Safe because every task is idempotent (unique keys + state checks in PostgreSQL).
        "task_acks_late": True,
        # A killed pool child (OOM, SIGKILL) re-queues its message instead of acking it away.
        "task_reject_on_worker_lost": True,
        # One reserved message per process: waiting messages stay in Redis, where a running
        # task drains them into its batch (workers/drain.py) or a sibling worker takes them;
        # prefetched ones would sit in this worker's memory, out of every batch's reach.
        "worker_prefetch_multiplier": 1,
        # Connection loss: let running acks_late tasks finish. Their ack cannot reach the
        # broker, so Redis re-delivers them after the visibility timeout and the rerun finds
        # nothing to claim (state check + lease). Cancelling would kill a batch mid-send:
        # its accepted sends are never recorded and go out again when the lease ends.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_connection_retry_on_startup": True,
        # Task events feed Flower's live throughput view (RSN_TASK_EVENTS=false turns them
        # off: they cost about a third of a no-op task's time on the broker).
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        # Time limits bound a stuck provider call; both stay well under the visibility timeout.
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        # Recycle pool children now and then: bounds slow leaks in SDKs and templates.
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        "worker_max_memory_per_child": 400_000,  # KiB
        # One queue per channel: operators scale and pause each channel's pool separately.
        "task_queues": [
            Queue(q, default_exchange, routing_key=q) for q in ALL_QUEUES
        ],
        "task_default_queue": EVENTS_QUEUE,
        "task_default_exchange": "return_notify",
        "task_default_routing_key": EVENTS_QUEUE,
        "task_routes": {
            INGEST_TASK: {"queue": EVENTS_QUEUE, "routing_key": EVENTS_QUEUE},
            SWEEP_TASK: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            HISTORY_TASK: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
            ROLLUP_TASK: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE},
        },
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s},
            # the retention purge of rendered content and PII, daily
            "retention": {"task": "return_notify.retention", "schedule": 24 * 3600.0,
                          "options": {"queue": MAINTENANCE_QUEUE}},
            # monthly partitions ahead, and months past RSN_HISTORY_MONTHS dropped or
            # archived: daily at a quiet hour (its DDL waits for locks at most seconds)
            "history": {"task": HISTORY_TASK, "schedule": crontab(minute=17, hour=3),
                        "options": {"queue": MAINTENANCE_QUEUE}},
            # the KPI aggregates (stats, report, GET /v1/stats over long windows)
            "stats-rollup": {"task": ROLLUP_TASK, "schedule": settings.stats_rollup_interval_s,
                             "options": {"queue": MAINTENANCE_QUEUE}},
        },
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
    }
