"""Flower against real workers: authenticated API, open /metrics, persistent state."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from return_notify.devtools.processes import Proc, start_flower, start_worker
from return_notify.producer import publish_many
from tests.helpers import event, uid, wait_until
from tests.integration.provider_helpers import free_port

pytestmark = pytest.mark.integration

CREDENTIALS = f"ops:{uid('pw-')}"


def get(url: str, auth: str | None = CREDENTIALS) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def succeeded(flower: Proc, task: str) -> float:
    _, body = get(flower.extra["url"] + "/metrics", auth=None)
    return sum(s.value for fam in text_string_to_metric_families(body) for s in fam.samples
               if s.name == "flower_events_total" and s.labels.get("task") == task
               and s.labels.get("type") == "task-succeeded")


@pytest.fixture(scope="module")
def stack(services: Any, tmp_path_factory: Any) -> Iterator[tuple[Proc, Proc, str]]:
    logdir = str(tmp_path_factory.mktemp("flower"))
    flower = start_flower(services.env(), port=free_port(), basic_auth=CREDENTIALS, logdir=logdir)
    # email and SMS by deliver tasks (as the compose file's per-queue workers do), not
    # inline in the ingest task: Flower counts both kinds
    worker = start_worker(services.env(RSN_INGEST_INLINE_MAX="0"), concurrency=2,
                          logdir=logdir, name="flowerw")
    yield flower, worker, logdir
    worker.stop(20)
    flower.stop(10)


def test_flower_sees_the_workers_and_counts_succeeded_tasks(svc: Any, stack: Any) -> None:
    # given
    flower, _, _ = stack
    url = flower.extra["url"]
    before = succeeded(flower, "return_notify.ingest")
    # when: work flows through the workers
    t = uid("t-")
    for _ in range(3):
        publish_many([event("label_created", tenant=t) for _ in range(4)])
    # then: /metrics (no credentials) shows the succeeded counts rise per task
    # (a running ingest task drains the messages waiting behind it: at least one task)
    wait_until(lambda: succeeded(flower, "return_notify.ingest") >= before + 1, timeout_s=30,
               what="Flower counted the ingest tasks")
    wait_until(lambda: succeeded(flower, "return_notify.deliver") >= 3, timeout_s=30,
               what="Flower counted the deliver tasks")
    # the API needs the credentials
    assert get(url + "/api/workers", auth=None)[0] == 401
    assert get(url + "/api/tasks", auth=None)[0] == 401
    assert get(url + "/api/workers", auth="ops:wrong")[0] == 401
    status, body = get(url + "/api/workers?refresh=1")
    assert status == 200 and any(name.startswith("flowerw-") for name in json.loads(body))
    status, body = get(url + "/api/tasks?taskname=return_notify.ingest&state=SUCCESS")
    tasks = json.loads(body)
    assert status == 200 and len(tasks) >= 1
    assert {t["name"] for t in tasks.values()} == {"return_notify.ingest"}
    # Flower shows event ids, never the events' addresses, numbers or names
    shown = json.dumps(tasks)
    assert "events=[" in shown and "ana@example.com" not in shown
    assert "+14155550123" not in shown and "'Ana'" not in shown
    assert get(url + "/healthcheck", auth=None)[0] == 200
    assert "pw-" not in flower.logfile.read_text()  # the password is never logged


def test_flower_state_survives_a_restart(svc: Any, stack: Any) -> None:
    # given: Flower has seen tasks, and stops (it saves its state on SIGTERM)
    flower, _, logdir = stack
    publish_many([event(tenant=uid("t-"))])
    wait_until(lambda: len(json.loads(get(flower.extra["url"] + "/api/tasks")[1])) > 0,
               what="tasks in Flower")
    seen = set(json.loads(get(flower.extra["url"] + "/api/tasks")[1]))
    flower.stop(10)
    # nor does the state file it keeps on disk
    from pathlib import Path

    state = b"".join(p.read_bytes() for p in Path(logdir).glob("flower-state.db*"))
    assert state and b"ana@example.com" not in state and b"+14155550123" not in state
    # when: it starts again on the same state file
    again = start_flower(svc.env(), port=free_port(), basic_auth=CREDENTIALS, logdir=logdir)
    try:
        status, body = get(again.extra["url"] + "/api/tasks")
        # then
        assert status == 200 and seen <= set(json.loads(body))
    finally:
        again.stop(10)


def test_flower_refuses_to_start_without_credentials(svc: Any) -> None:
    env = {**os.environ, **svc.env(), "RSN_FLOWER_BASIC_AUTH": ""}
    proc = subprocess.run([sys.executable, "-m", "return_notify.cli", "flower", "--port",
                           str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "RSN_FLOWER_BASIC_AUTH" in proc.stderr and "--no-auth" in proc.stderr
