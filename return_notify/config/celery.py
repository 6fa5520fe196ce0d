"""Celery configuration for Redis, each setting with the reason it is set.

Shared by the worker app and the lightweight producer app so both agree on the wire format.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from return_notify.config.settings import Settings
from return_notify.core.redis_urls import kombu_url, mask, scheme
from return_notify.errors import ConfigurationError

if TYPE_CHECKING:  # celery and kombu load with the worker, beat or producer, not with
    # every command line that only needs the names below (queues, task names)
    from celery.schedules import crontab

INGEST_TASK = "return_notify.ingest"
DELIVER_TASK = "return_notify.deliver"
SWEEP_TASK = "return_notify.sweep"
NOOP_TASK = "return_notify.noop"
RETENTION_TASK = "return_notify.retention"
HISTORY_TASK = "return_notify.history"
ROLLUP_TASK = "return_notify.stats_rollup"

EVENTS_QUEUE = "events"
CHANNEL_QUEUES = ("email", "sms", "inapp")
MAINTENANCE_QUEUE = "maintenance"
#: the daily retention purge: a queue of its own, so a long purge never holds the slot the
#: sweeper needs (compose runs a worker for it; `worker` with no -Q consumes it too)
RETENTION_QUEUE = "retention"
ALL_QUEUES = (EVENTS_QUEUE, *CHANNEL_QUEUES, MAINTENANCE_QUEUE, RETENTION_QUEUE)

#: Celery's own broker variables: it reads them before its configuration, so a value
#: different from RSN_BROKER_URL would split the system (Celery on one Redis, the rate
#: limiter, metrics, inbox and streams on another)
CELERY_BROKER_ENV = ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL")
NO_BROKER = ("RSN_BROKER_URL is not set: point it at Redis (redis://, rediss:// or sentinel://); "
             "without it Celery would try amqp://guest@localhost")


def check_broker(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Refuse a configuration that names two brokers: ``ConfigurationError`` when one of
    Celery's own variables (``CELERY_BROKER_URL``, …) is set and differs from
    ``RSN_BROKER_URL``, and when only Celery's is set."""
    env = os.environ if environ is None else environ
    for name in CELERY_BROKER_ENV:
        value = env.get(name)
        if value and value != settings.broker_url:
            raise ConfigurationError(
                f"{name} ({mask(value)}) differs from RSN_BROKER_URL ({mask(settings.broker_url)}): "
                f"one broker setting only. Unset {name} and set RSN_BROKER_URL.")


def require_broker(settings: Settings, environ: Mapping[str, str] | None = None) -> str:
    """RSN_BROKER_URL, checked (``check_broker``); ``ConfigurationError`` if it is unset."""
    check_broker(settings, environ)
    if not settings.broker_url:
        raise ConfigurationError(NO_BROKER)
    scheme(settings.broker_url)
    return settings.broker_url


#: ids shown per message in Flower (the rest are counted)
_SHOWN_IDS = 20


def _ids(values: list[Any]) -> str:
    shown = ", ".join(str(v)[:128] for v in values[:_SHOWN_IDS])
    more = f", … {len(values) - _SHOWN_IDS} more" if len(values) > _SHOWN_IDS else ""
    return f"[{shown}{more}]"


def task_argsrepr(task: str, args: Any) -> str:
    """What Flower (and its state file) shows of a message's arguments: ids only.

    An ingest message carries whole events (addresses, numbers, names); by default Celery
    sends ``repr(args)`` as ``argsrepr``, which Flower displays and persists. Every
    ``send_task`` passes this instead, and the workers' ``before_task_publish`` handler
    applies it to what Celery publishes by itself (retries).
    """
    args = list(args or [])
    if task == INGEST_TASK:
        events = args[0] if args else []
        events = events if isinstance(events, list) else [events]
        ids = [e.get("event_id", "?") if isinstance(e, dict) else "?" for e in events]
        return f"events={_ids(ids)} ({len(events)})"
    if task == DELIVER_TASK and len(args) == 2 and isinstance(args[1], list):
        return f"{str(args[0])[:16]}, deliveries={_ids(args[1])} ({len(args[1])})"
    return f"({len(args)} argument(s))"


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
    if settings.broker_url and scheme(settings.broker_url) == "sentinel":
        # kombu asks the Sentinels for this primary, and again after a failover
        opts["master_name"] = settings.redis_sentinel_master
        opts["sentinel_kwargs"] = {"socket_connect_timeout": 5.0, "socket_timeout": 5.0}
        if settings.redis_sentinel_password is not None:
            opts["sentinel_kwargs"]["password"] = settings.redis_sentinel_password.get_secret_value()
    return opts


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings of every process (workers, beat, producer).

    ``ConfigurationError`` when Celery's own broker variable disagrees with RSN_BROKER_URL;
    an unset RSN_BROKER_URL is refused when a connection is made (``workers.app``)."""
    check_broker(settings)
    if settings.max_countdown_s + settings.task_time_limit_s >= settings.visibility_timeout_s:
        raise ValueError(
            "RSN_VISIBILITY_TIMEOUT_S must exceed RSN_MAX_COUNTDOWN_S + RSN_TASK_TIME_LIMIT_S, "
            "or Redis re-delivers waiting messages and they run twice"
        )
    from celery.schedules import crontab
    from kombu import Exchange, Queue

    default_exchange = Exchange("return_notify", type="direct")
    return {
        # kombu's spelling of RSN_BROKER_URL (Sentinel: one URL per Sentinel)
        "broker_url": kombu_url(settings.broker_url) if settings.broker_url else None,
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
        # off: they cost about a third of a no-op task's time on the broker). No "task-sent"
        # event per published message (Celery's default): Flower counts every task from the
        # workers' received/succeeded events, and a task publishing follow-ups (ingest's
        # deliver messages, retries) would pay one more broker round trip for each.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": False,
        # Time limits bound a stuck provider call; both stay well under the visibility timeout.
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        # Recycle pool children now and then: bounds slow leaks in SDKs and templates.
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        # KiB; 0: set at start from the warm parent's size (workers/app.py)
        "worker_max_memory_per_child": settings.max_memory_per_child_mib * 1024 or None,
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
            # slow housekeeping shares the retention queue and worker, never the sweeper's
            RETENTION_TASK: {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE},
            HISTORY_TASK: {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE},
            ROLLUP_TASK: {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE},
        },
        # The purge runs longer than any pipeline task: its own limits, and acked when it
        # starts (a late ack would let Redis hand a run longer than the visibility timeout to
        # a second worker). A lost run costs nothing: it is idempotent and resumes tomorrow.
        # housekeeping runs longer than a pipeline task: its own limits (retention, the
        # history maintenance and the first rollups of a large history)
        "task_annotations": {task: {
            "time_limit": settings.retention_time_limit_s,
            "soft_time_limit": settings.retention_time_limit_s - 60,
            "acks_late": False} for task in (RETENTION_TASK, HISTORY_TASK, ROLLUP_TASK)},
        "beat_schedule": {
            "sweep": {"task": SWEEP_TASK, "schedule": settings.sweep_interval_s},
            # the retention purge of rendered content and PII, daily at a fixed time (UTC):
            # a crontab, so a beat restart neither skips nor repeats it
            "retention": {"task": RETENTION_TASK, "schedule": retention_schedule(settings),
                          "options": {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE,
                                      "expires": 6 * 3600}},
            # monthly partitions ahead, and months past RSN_HISTORY_MONTHS dropped or
            # archived: daily at a quiet hour (its DDL waits for locks at most seconds)
            "history": {"task": HISTORY_TASK, "schedule": crontab(minute=17, hour=3),
                        "options": {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE}},
            # the KPI aggregates (stats, report, GET /v1/stats over long windows)
            "stats-rollup": {"task": ROLLUP_TASK, "schedule": settings.stats_rollup_interval_s,
                             "options": {"queue": RETENTION_QUEUE, "routing_key": RETENTION_QUEUE,
                                         "expires": settings.stats_rollup_interval_s}},
        },
        "timezone": "UTC",
        "enable_utc": True,
        "worker_hijack_root_logger": False,
    }


def retention_schedule(settings: Settings) -> crontab:
    """Every day at ``RSN_RETENTION_AT`` (UTC)."""
    from celery.schedules import crontab

    hour, minute = settings.retention_at.split(":")
    return crontab(hour=int(hour), minute=int(minute))
