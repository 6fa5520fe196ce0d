"""The Celery signals of every worker and beat process, connected once by ``connect()``:
the start-up checks (one broker setting) and the process kind PostgreSQL sees, logging
(context filter, JSON lines, task ids on every line) and worker metrics.

``workers/app.py`` calls ``connect()`` when it builds the app, so any process that loads
the app (``celery -A return_notify.workers.app``, the CLI's ``worker`` and ``beat``) has
them; ``observability`` itself imports no Celery.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys
import time
from typing import Any

from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    beat_init,
    before_task_publish,
    celeryd_init,
    import_modules,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from return_notify.config.celery import task_argsrepr
from return_notify.config.settings import get_settings
from return_notify.errors import ConfigurationError
from return_notify.observability import logs, metrics
from return_notify.storage import db
from return_notify.workers import ingest_gate

_connected = False
#: a pool process gives freed memory back to the system at most this often (seconds)
TRIM_EVERY_S = 30.0
_last_trim = 0.0
_libc: Any = None


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
    _trim_memory()


def _trim_memory() -> None:
    """After a burst the pool processes would keep the peak's memory: a batch of a thousand
    events leaves freed objects scattered over the heap, which glibc does not return to
    the system by itself. Every ``TRIM_EVERY_S`` (after a task), collect the garbage and
    ask glibc to release free pages (``malloc_trim``), so RSS comes back after a backlog."""
    global _last_trim, _libc
    now = time.monotonic()
    if now - _last_trim < TRIM_EVERY_S:
        return
    _last_trim = now
    gc.collect()
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc: nothing to trim
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


def _check_broker(**_: Any) -> None:
    """Refuse two broker settings or none (Celery would fall back to amqp://guest@localhost).

    Connected to ``import_modules`` too: beat and the worker send it while loading the app,
    before beat's banner or the worker's first connection."""
    from return_notify.config.celery import require_broker

    try:
        require_broker(get_settings())
    except ConfigurationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None  # Celery logs and swallows an Exception from a handler


def _starting(kind: str) -> None:
    """A worker or beat starts: the broker check, and the process named for PostgreSQL."""
    _check_broker()
    db.set_process_kind(kind)


def _worker_starts(**_: Any) -> None:
    _starting("worker")


def _beat_starts(**_: Any) -> None:
    _starting("beat")


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
    if get_settings().ingest_gate_wait_ms > 0:
        ingest_gate.open_for_worker()  # before the pool starts: its processes inherit it


def _worker_ready(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    try:
        consuming = set(app.amqp.queues.consume_from or {q.name for q in app.conf.task_queues}
                        ) if app is not None else set()
    except Exception:  # noqa: BLE001 - no queue information: no backlog metric
        consuming = set()
    metrics.start_worker_endpoint([q.name for q in (app.conf.task_queues or [])]
                                  if app is not None else [], consuming)


def _process_gone(pid: int | None = None, **_: Any) -> None:
    metrics.pool_process_gone(pid)


def _worker_shutdown(**_: Any) -> None:
    metrics.stop_worker_endpoint()
    ingest_gate.close_for_worker()


def connect() -> None:
    """Connect every handler (idempotent: Celery keeps strong references, ``weak=False``)."""
    global _connected
    if _connected:
        return
    logs.set_task_lookup(_current_task)
    for signal, handler in ((celeryd_init, _worker_starts), (beat_init, _beat_starts),
                            (import_modules, _check_broker),
                            (after_setup_logger, _root_logger),
                            (after_setup_task_logger, _task_logger),
                            (task_prerun, _task_starts), (task_postrun, _task_ends),
                            (before_task_publish, _before_publish),
                            (worker_init, _worker_init), (worker_ready, _worker_ready),
                            (worker_process_shutdown, _process_gone),
                            (worker_shutdown, _worker_shutdown)):
        signal.connect(handler, weak=False)
    _connected = True
