"""A bare Celery app with Celery's default configuration and one no-op task: the ceiling
``return-notify bench`` compares the pipeline with (``celery -A
return_notify.devtools.bare_celery worker``). Only the broker URL (``RSN_BROKER_URL``) and
the key prefix (``RSN_REDIS_KEY_PREFIX``, so a run never touches other keys) are set."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

from return_notify.config.celery import NOOP_TASK

app = Celery("bare", broker=os.environ.get("RSN_BROKER_URL"), set_as_current=False)
if os.environ.get("RSN_REDIS_KEY_PREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["RSN_REDIS_KEY_PREFIX"]}
app.conf.worker_hijack_root_logger = False


@app.task(name=NOOP_TASK)
def noop(*_: Any, **__: Any) -> None:
    """Does nothing: one message's worth of Celery's own work."""
