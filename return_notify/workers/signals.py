"""The Celery signals of every worker and beat process, connected once by ``connect()``:
logging (context filter, JSON lines, task ids on every line) and worker metrics.

``workers/app.py`` calls ``connect()`` when it builds the app, so any process that loads
the app (``celery -A return_notify.workers.app``, the CLI's ``worker`` and ``beat``) has
them; ``observability`` itself imports no Celery.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from return_notify.config.celery import task_argsrepr
from return_notify.observability import logs, metrics

_connected = False


def _current_task() -> tuple[str, str] | None:
    from celery._state import get_current_task

    task = get_current_task()
    if task is None or task.request is None or not task.request.id:
        return None
    return str(task.request.id), str(task.name)


def _root_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    logs.configure_celery_logger(logger, root=True)


def _task_logger(logger: logging.Logger | None = None, **_: Any) -> None:
    logs.configure_celery_logger(logger, root=False)


def _task_starts(task_id: str | None = None, task: Any = None, args: Any = None,
                 kwargs: Any = None, **_: Any) -> None:
    logs.enter_task(getattr(task, "name", None), task_id, args, kwargs)


def _task_ends(task_id: str | None = None, **_: Any) -> None:
    logs.exit_task(task_id)


def _before_publish(sender: str | None = None, body: Any = None,
                    headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Ids only in what Flower shows of any message this process publishes, retries
    included (``config.celery.task_argsrepr``)."""
    if headers is None or not sender or not str(sender).startswith("return_notify."):
        return
    args = body[0] if isinstance(body, tuple | list) and body else headers.get("args")
    try:
        headers["argsrepr"] = task_argsrepr(str(sender), args)
        headers["kwargsrepr"] = "{}"
    except Exception:  # noqa: BLE001 - never block a publish over its label
        headers["argsrepr"] = "(arguments hidden)"


def _worker_init(**_: Any) -> None:
    metrics.setup_worker_metrics()


def _worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    metrics.start_worker_endpoint([q.name for q in (app.conf.task_queues or [])]
                                  if app is not None else [])


def _process_gone(pid: int | None = None, **_: Any) -> None:
    metrics.pool_process_gone(pid)


def _worker_shutdown(**_: Any) -> None:
    metrics.stop_worker_endpoint()


def connect() -> None:
    """Connect every handler (idempotent: Celery keeps strong references, ``weak=False``)."""
    global _connected
    if _connected:
        return
    logs.set_task_lookup(_current_task)
    for signal, handler in ((after_setup_logger, _root_logger),
                            (after_setup_task_logger, _task_logger),
                            (task_prerun, _task_starts), (task_postrun, _task_ends),
                            (before_task_publish, _before_publish),
                            (worker_init, _worker_init), (worker_ready, _worker_ready),
                            (worker_process_shutdown, _process_gone),
                            (worker_shutdown, _worker_shutdown)):
        signal.connect(handler, weak=False)
    _connected = True
