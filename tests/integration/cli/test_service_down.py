"""Operator commands with PostgreSQL or Redis not answering: one line on standard error and
exit 3 (a JSON error object on standard output with --json), never a traceback; workers and
beat refuse two broker settings or none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.cli_helpers import run_ops
from tests.integration.provider_helpers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def down() -> dict[str, str]:
    """Settings naming a PostgreSQL and a Redis that nobody listens on."""
    return {"RSN_DATABASE_URL": f"postgresql://rsn:s3cret@127.0.0.1:{free_port()}/rsn",
            "RSN_BROKER_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}


@pytest.mark.parametrize(("args", "service"), [
    (["deliveries", "list", "--json"], "postgresql"),
    (["deliveries", "show", "1", "--json"], "postgresql"),
    (["dlq", "replay", "--all", "--json"], "postgresql"),
    (["stats", "--json"], "postgresql"),
    (["tenants", "list", "--json"], "postgresql"),
    (["retention", "--json"], "postgresql"),
    (["streams", "info", "--json"], "redis"),
    (["streams", "dead", "--json"], "redis"),
])
def test_json_commands_answer_a_json_error_and_exit_3(
    args: list[str], service: str, down: dict[str, str],
) -> None:
    proc = run_ops(*args, env=down)
    assert proc.returncode == 3, proc.stderr
    error = json.loads(proc.stdout)
    assert error["error"] == "unavailable" and error["service"] == service
    assert error["message"] and "***@127.0.0.1" in error["url"]
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "s3cret" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("args", [["db", "upgrade"], ["streams", "info"], ["report", "--out",
                                                                          os.devnull]])
def test_plain_commands_say_one_line_and_exit_3(args: list[str], down: dict[str, str]) -> None:
    proc = run_ops(*args, env=down)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == ""
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "did not answer" in line


def test_db_upgrade_wait_retries_then_gives_up_with_exit_3(down: dict[str, str]) -> None:
    t0 = time.monotonic()
    proc = run_ops("db", "upgrade", "--wait", "2", env=down)
    assert proc.returncode == 3
    assert "retrying" in proc.stderr and time.monotonic() - t0 >= 1.5


def test_a_worker_refuses_celerys_own_broker_variable_disagreeing(svc: object) -> None:
    env = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run([sys.executable, "-m", "return_notify.cli", "worker", "-Q", "events"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "CELERY_BROKER_URL" in line and "differs from RSN_BROKER_URL" in line


def test_celery_itself_refuses_to_start_without_a_broker_instead_of_amqp_guest() -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RSN_BROKER_URL", "CELERY_BROKER_URL")}
    env["RSN_BROKER_URL"] = ""
    for args in (["worker", "-P", "solo"], ["beat", "-s", os.devnull + ".beat"]):
        proc = subprocess.run([sys.executable, "-m", "celery", "-A", "return_notify.workers.app",
                               *args], env=env, capture_output=True, text=True, timeout=60,
                              cwd=os.path.dirname(os.devnull))
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "RSN_BROKER_URL is not set" in proc.stderr
        assert "Cannot connect to amqp" not in proc.stderr
