"""The commands of docker-compose.yml, run as they are written there (Docker itself is not
needed): migrate waits and upgrades, the ingest and delivery pool profiles start, size their
pools and deliver, and each worker's health check finds its worker by node name."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from sqlalchemy import text

from return_notify.config.settings import Settings
from return_notify.devtools.endpoints import Endpoints, scratch_keys
from return_notify.devtools.processes import Proc, _spawn, stop_process, wait_for, wait_for_log
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from tests.helpers import REPO_ROOT, event, uid, wait_until

pytestmark = pytest.mark.integration

COMPOSE = REPO_ROOT / "docker-compose.yml"


def compose_service(service: str) -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"][service])


def compose_command(service: str) -> list[str]:
    return list(compose_service(service)["command"])


@pytest.fixture
def compose_workers(services: Any, tmp_path: Path) -> Iterator[tuple[str, dict[str, Proc]]]:
    prefix = f"rsn-compose-{uuid.uuid4().hex[:8]}:"
    env = services.env(RSN_REDIS_KEY_PREFIX=prefix)
    env.pop("RSN_PROVIDER_CONCURRENCY", None)
    procs: dict[str, Proc] = {}
    try:
        for service in ("worker-events", "worker-email"):
            # %h (this machine's name) would clash with other runs here: a unique host name
            # stands in for the container's, as $HOSTNAME would in the health check
            cmd = compose_command(service)
            host = f"c{uuid.uuid4().hex[:10]}"
            cmd[cmd.index("-n") + 1] = cmd[cmd.index("-n") + 1].replace("%h", host)
            ready = tmp_path / f"{service}.ready"
            procs[service] = proc = _spawn(service, [*cmd, "-l", "INFO"],
                                           {**env, "RSN_READY_FILE": str(ready)}, str(tmp_path))
            proc.extra["hostname"] = host
            wait_for(proc, ready.exists, 60)
        yield prefix, procs
    finally:
        for proc in procs.values():
            stop_process(proc.popen, 20)
        # the run's queues (in-app messages no compose worker here consumes) and bindings
        with scratch_keys(Endpoints(services.broker_url, "", embedded=False), prefix):
            pass


def test_compose_worker_profiles_size_their_pools_and_deliver(
    svc: Any, compose_workers: tuple[str, dict[str, Proc]],
) -> None:
    prefix, procs = compose_workers
    cpus = os.cpu_count() or 1

    # the profiles: ingest one process per CPU, delivery four; the delivery worker compiled
    # the templates before forking its pool
    def pool_size(proc: Proc) -> int:
        return len(psutil.Process(proc.popen.pid).children())

    assert "--profile" in compose_command("worker-email")
    assert pool_size(procs["worker-events"]) == cpus
    assert pool_size(procs["worker-email"]) == 4 * cpus
    wait_for_log(procs["worker-email"], "templates warmed before fork", 10)
    assert "templates warmed" not in procs["worker-events"].logfile.read_text()  # no rendering

    # and an event published under their key prefix is ingested and its email sent
    rid = uid("R-compose-")
    ev = event("return_initiated", tenant=f"t-{uid()}", return_id=rid)
    publish(ev, settings=Settings(redis_key_prefix=prefix))

    def email_state() -> str | None:
        with session_scope() as s:
            return s.execute(text(
                "SELECT d.state FROM deliveries d JOIN returns r ON r.id = d.return_pk "
                "WHERE r.return_id = :r AND d.channel = 'email'"), {"r": rid}).scalar()

    wait_until(lambda: email_state() == "sent", timeout_s=60, what="the email sent")

    # the pool processes' connections carry their process kind for pg_stat_activity
    with session_scope() as s:
        names = set(s.execute(text(
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
        )).scalars())
    assert "return-notify-worker" in names, names


def test_compose_health_checks_find_each_worker_by_its_node_name(
    svc: Any, compose_workers: tuple[str, dict[str, Proc]],
) -> None:
    prefix, procs = compose_workers
    env = {**os.environ, **svc.env(RSN_REDIS_KEY_PREFIX=prefix)}
    for service, proc in procs.items():
        test = compose_service(service)["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL"
        script = test[1].replace("$$", "$")  # compose's escape of a literal $
        # as the container runs it: its own host name answers, another one does not
        ok = subprocess.run(["sh", "-c", script], env={**env, "HOSTNAME": proc.extra["hostname"]},
                            capture_output=True, text=True, timeout=120)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        other = subprocess.run(["sh", "-c", script.replace("--timeout 20", "--timeout 2")],
                               env={**env, "HOSTNAME": "nobody-here"}, capture_output=True,
                               text=True, timeout=120)
        assert other.returncode != 0, service


def test_compose_migrate_command_upgrades(svc: Any) -> None:
    cmd = compose_command("migrate")
    proc = subprocess.run([sys.executable, "-m", "return_notify.cli", *cmd],
                          env={**os.environ, **svc.env()}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "database at revision" in proc.stdout
