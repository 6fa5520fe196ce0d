"""The command line starts without loading Celery and kombu: commands that only read the
database (stats, report, db, tenants …) do not pay for the worker's imports (about half a
second of every invocation)."""

from __future__ import annotations

import subprocess
import sys


def test_the_command_line_does_not_import_celery_until_a_command_needs_it() -> None:
    code = ("import sys, return_notify.cli.main, return_notify.config.celery; "
            "print(sorted(m for m in ('celery', 'kombu') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "[]"


def test_the_celery_configuration_still_builds_its_queues_and_schedule() -> None:
    from return_notify.config.celery import ALL_QUEUES, celery_config
    from return_notify.config.settings import Settings

    config = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert [q.name for q in config["task_queues"]] == list(ALL_QUEUES)
    assert config["beat_schedule"]["history"]["schedule"].hour == {3}
