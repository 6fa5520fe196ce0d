"""The worker commands of docker-compose.yml, run as they are written there (Docker itself is
not needed): the ingest and delivery pool profiles start, size their pools and deliver."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from sqlalchemy import text

from return_notify.config.settings import Settings
from return_notify.devtools.processes import Proc, _spawn, stop_process, wait_for, wait_for_log
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from tests.helpers import REPO_ROOT, event, uid, wait_until

pytestmark = pytest.mark.integration

COMPOSE = REPO_ROOT / "docker-compose.yml"


def compose_command(service: str) -> list[str]:
    return list(yaml.safe_load(COMPOSE.read_text())["services"][service]["command"])


@pytest.fixture
def compose_workers(services: Any, tmp_path: Path) -> Iterator[tuple[str, dict[str, Proc]]]:
    prefix = f"rsn-compose-{uuid.uuid4().hex[:8]}:"
    env = services.env(RSN_REDIS_KEY_PREFIX=prefix)
    env.pop("RSN_PROVIDER_CONCURRENCY", None)
    procs: dict[str, Proc] = {}
    try:
        for service in ("worker-events", "worker-email"):
            # -n from compose ("email@%h") would clash with other runs on this host
            cmd = compose_command(service)
            cmd[cmd.index("-n") + 1] = f"{service}-{uuid.uuid4().hex[:6]}@%h"
            ready = tmp_path / f"{service}.ready"
            procs[service] = proc = _spawn(service, [*cmd, "-l", "INFO"],
                                           {**env, "RSN_READY_FILE": str(ready)}, str(tmp_path))
            wait_for(proc, ready.exists, 60)
        yield prefix, procs
    finally:
        for proc in procs.values():
            stop_process(proc.popen, 20)


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
