"""The Celery app of the workers and beat (``celery -A return_notify.workers.app``)."""

from __future__ import annotations

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

from return_notify.config.celery import DELIVER_TASK, celery_config
from return_notify.config.settings import get_settings
from return_notify.workers import signals

log = logging.getLogger(__name__)


def create_app() -> Celery:
    # logging (JSON lines, ids, masking) and metrics in every process of this app: workers,
    # beat and the tools that start them
    signals.connect()
    app = Celery("return_notify", set_as_current=True)
    app.conf.update(celery_config(get_settings()))
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
                    app.send_task(DELIVER_TASK, args=[channel, group[i : i + size]], **opts)
                    sent += 1
    return sent


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


@worker_process_init.connect
def _init_process(**_: Any) -> None:
    """A forked pool child builds its own engine and provider clients (never the parent's)."""
    from return_notify.channels.registry import reset_channels
    from return_notify.storage.db import dispose_engine
    from return_notify.workers.drain import reset_drainers

    dispose_engine()
    reset_channels()
    reset_drainers()  # the parent's Redis connection is not this process's


@worker_process_shutdown.connect
def _shutdown_process(**_: Any) -> None:
    from return_notify.channels.registry import reset_channels
    from return_notify.storage.db import dispose_engine

    reset_channels()
    dispose_engine()
