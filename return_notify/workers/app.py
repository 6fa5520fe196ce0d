"""The Celery app of the workers and beat (``celery -A return_notify.workers.app``)."""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from celery import Celery
from celery.signals import (
    celeryd_after_setup,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from sqlalchemy.exc import OperationalError

from return_notify.config.celery import DELIVER_TASK, NO_BROKER, celery_config, task_argsrepr
from return_notify.config.settings import get_settings
from return_notify.errors import ConfigurationError
from return_notify.workers import signals

log = logging.getLogger(__name__)


class ReturnNotifyCelery(Celery):
    """Celery that refuses to connect without RSN_BROKER_URL instead of falling back to its
    default broker (``amqp://guest@localhost``), whoever asks: a worker, beat, Flower,
    ``celery -A … inspect``, a producer. Its broker connections send through one Redis
    client per channel (``config.broker_client``)."""

    amqp_cls = "return_notify.config.broker_client:BrokerAMQP"

    def _connection(self, url: Any, *args: Any, **kwargs: Any) -> Any:
        if not url:
            raise ConfigurationError(NO_BROKER)
        return super()._connection(url, *args, **kwargs)


def create_app() -> Celery:
    # logging (JSON lines, ids, masking) and metrics in every process of this app: workers,
    # beat and the tools that start them
    signals.connect()
    app = ReturnNotifyCelery("return_notify", set_as_current=True)
    app.conf.update(celery_config(get_settings()))
    from return_notify.workers.pool_memory import PoolMemory

    app.steps["worker"].add(PoolMemory)
    app.conf.imports = (
        "return_notify.tasks.ingest",
        "return_notify.tasks.deliver",
        "return_notify.tasks.maintenance",
        "return_notify.tasks.retention",
        "return_notify.tasks.history",
    )
    return app


app = create_app()


def reconfigure() -> None:
    """Re-read settings into the app and drop pooled broker connections (tests and tools
    that change RSN_* in a running process; workers never need it)."""
    app.conf.update(celery_config(get_settings()))
    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None


def consumes(queue: str) -> bool:
    """Whether this worker consumes ``queue`` (``-Q``); any process without a queue
    selection (a worker with all queues, a test calling a task body) counts as consuming all."""
    try:
        selected = app.amqp.queues.consume_from
    except Exception:  # noqa: BLE001 - no queue information: as without a selection
        return True
    return not selected or queue in selected


#: Redis message priorities (kombu: 0 is served first). Transactional milestones (refund
#: processed, label created, exceptions, ...) go ahead of informational ones in a backlog.
PRIORITY_URGENT, PRIORITY_DEFAULT, PRIORITY_INFO = 0, 3, 6


def enqueue_deliveries(
    by_channel: dict[str, list[int]], *, batch_size: int | None = None,
    countdown: float | None = None, urgent: set[int] | None = None,
) -> int:
    """Send deliver messages, ``batch_size`` delivery ids each, to each channel's queue.

    With ``urgent`` given, those ids go out at the urgent priority and the others at the
    informational one; without it, at the default priority (retries, sweeps, replays).
    Call only after the transaction that created or changed the deliveries committed.
    """
    size = batch_size or get_settings().deliver_batch_size
    sent = 0
    with app.producer_or_acquire() as producer:
        for channel, ids in by_channel.items():
            if urgent is None:
                groups = [(PRIORITY_DEFAULT, ids)]
            else:
                groups = [(PRIORITY_URGENT, [i for i in ids if i in urgent]),
                          (PRIORITY_INFO, [i for i in ids if i not in urgent])]
            for priority, group in groups:
                for i in range(0, len(group), size):
                    opts: dict[str, Any] = {"queue": channel, "routing_key": channel,
                                            "producer": producer, "priority": priority}
                    if countdown:
                        opts["countdown"] = countdown
                    ids = group[i : i + size]
                    app.send_task(DELIVER_TASK, args=[channel, ids], kwargsrepr="{}",
                                  argsrepr=task_argsrepr(DELIVER_TASK, [channel, ids]), **opts)
                    sent += 1
    return sent


@celeryd_after_setup.connect
def _refuse_noncompliant(instance: Any = None, **_: Any) -> None:
    """A worker that consumes the email queue does not start with a real email provider
    and no RSN_UNSUBSCRIBE_SECRET (``celery -A`` started directly; the CLI says it first)."""
    try:
        queues = set(instance.app.amqp.queues.consume_from or {}) if instance is not None else set()
    except Exception:  # noqa: BLE001 - no queue information: check anyway
        queues = set()
    if queues and "email" not in queues:
        return
    from return_notify.channels.registry import compliance_problems

    problems = compliance_problems(get_settings())
    if problems:
        log.critical("refusing to start: %s", problems[0])
        # SystemExit: Celery logs and ignores an ordinary exception raised by a signal handler
        raise SystemExit(f"refusing to start: {problems[0]}")


@worker_ready.connect
def _announce_ready(**_: Any) -> None:
    """Touch $RSN_READY_FILE once the worker consumes: supervisors and tests wait on it."""
    path = os.environ.get("RSN_READY_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))


@celeryd_after_setup.connect
def _warm_templates(instance: Any = None, **_: Any) -> None:
    """Compile the packaged templates once in the parent, before the pool forks (this
    signal comes after logging is set up and the -Q queues are chosen, before the pool).

    Every pool process (and every replacement after ``max_tasks_per_child``) then starts
    warm instead of spending ~2 s of CPU compiling them in the middle of a peak. Only a
    worker that consumes a channel queue renders; ``RSN_WARM_TEMPLATES=false`` skips it.
    """
    if os.environ.get("RSN_WARM_TEMPLATES", "true").strip().lower() in ("0", "false", "no"):
        return
    try:
        queues = set(instance.app.amqp.queues.consume_from or {}) if instance is not None else set()
    except Exception:  # noqa: BLE001 - no queue information: warm anyway
        queues = set()
    if queues and not queues & {"email", "sms", "inapp"}:
        return
    from return_notify.templating.render import warm

    try:
        log.info("templates warmed before fork: %d renders", warm())
        _prime_provider_sdks()
        from sqlalchemy.orm import configure_mappers

        from return_notify.pipeline import deliver  # noqa: F401 - imports every model

        configure_mappers()  # else each pool process configures them on its first batch
    except Exception:  # noqa: BLE001 - a send reports a broken template; never block start
        log.warning("template warm-up failed", exc_info=True)


@celeryd_after_setup.connect
def _bound_pool_memory(instance: Any = None, **_: Any) -> None:
    """With ``RSN_MAX_MEMORY_PER_CHILD_MIB=0``: the two limits of ``workers.pool_memory``,
    measured here from the warm parent's size, after the warm-up and before the pool forks
    (the pool is created from these options when the worker starts its steps). A pool
    process above ``RSN_POOL_MEMORY_GROWTH_PCT`` is replaced once the worker is idle; one
    above ``RSN_POOL_MEMORY_HARD_PCT`` after its current task."""
    from return_notify.workers.pool_memory import set_idle_limit

    settings = get_settings()
    pool = getattr(instance, "pool", None)
    options = getattr(pool, "options", None)
    if settings.max_memory_per_child_mib or not isinstance(options, dict):
        set_idle_limit(0)
        return
    import psutil

    warm_kib = psutil.Process().memory_info().rss // 1024
    idle = int(warm_kib * (1 + settings.pool_memory_growth_pct / 100))
    hard = int(warm_kib * (1 + max(settings.pool_memory_hard_pct,
                                   settings.pool_memory_growth_pct) / 100))
    set_idle_limit(idle)
    options["max_memory_per_child"] = hard
    log.info("a pool process is replaced once idle above %d MiB, or after its task above "
             "%d MiB (warm size %d MiB + %d%% / %d%%)", idle // 1024, hard // 1024,
             warm_kib // 1024, settings.pool_memory_growth_pct, settings.pool_memory_hard_pct)


def _prime_provider_sdks() -> None:
    """Import the provider SDKs and their lazily loaded parts (Twilio's Messages resource,
    SendGrid's Mail helpers) in the parent, without credentials and without a connection:
    these throwaway clients only load code, which the forked pool processes then share."""
    from return_notify.channels.base import OutboundMessage
    from return_notify.channels.sendgrid_email import SendGridChannel
    from return_notify.channels.smtp_email import EmailIdentity
    from return_notify.channels.twilio_sms import TwilioChannel

    sms = TwilioChannel("AC" + "0" * 32, "unused", from_number="+10000000000",
                        base_url="http://127.0.0.1:9")
    _ = sms._client.messages  # noqa: SLF001 - resolves the SDK's lazy resource modules
    email = SendGridChannel("SG.unused", EmailIdentity("warm@example.com"),
                            base_url="http://127.0.0.1:9")
    email.build_mail(OutboundMessage(0, "email", "warm@example.com", "text", subject="s",
                                     html="<p>html</p>")).get()
    sms.close()
    email.close()


#: housekeeping tasks retry a lost database connection a few times (a PostgreSQL restart;
#: pool processes skip the checkout ping) instead of waiting for their next schedule
RETRY_LOST_DATABASE: dict[str, Any] = {
    "autoretry_for": (OperationalError,), "retry_backoff": 5, "retry_backoff_max": 60,
    "retry_jitter": True, "max_retries": 5,
}


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    """A forked pool child builds its own engine and provider clients (never the parent's)."""
    from return_notify.channels.registry import reset_channels
    from return_notify.storage.db import skip_pre_ping
    from return_notify.workers.drain import reset_drainers

    skip_pre_ping()  # and a fresh engine: every task here retries a lost connection
    reset_channels()
    reset_drainers()  # the parent's Redis connection is not this process's
    # what the parent imported and warmed lives as long as the process: out of the
    # collector's sight, a full collection (the memory trim's, every 30 s) scans only what
    # tasks made (measured: a 0.3 s pause per collection before, in the latency's tail)
    gc.freeze()


@worker_process_shutdown.connect
def _shutdown_process(**_: Any) -> None:
    from return_notify.channels.registry import reset_channels
    from return_notify.storage.db import dispose_engine

    reset_channels()
    dispose_engine()
