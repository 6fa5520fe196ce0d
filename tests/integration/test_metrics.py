"""Prometheus metrics of a real prefork worker: every pool process counted, recycled ones too."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from return_notify.producer import publish_many
from return_notify.runner import Proc, start_worker
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until
from tests.integration.provider_fixtures import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics_worker(services: Any, tmp_path_factory: Any) -> Iterator[tuple[Proc, int, Any]]:
    port = free_port()
    mdir = tmp_path_factory.mktemp("prom")
    (mdir / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: wiped at start
    env = services.env(RSN_METRICS_PORT=str(port), RSN_METRICS_DIR=str(mdir),
                       # recycle pool processes after 2 tasks: their counts must survive
                       RSN_MAX_TASKS_PER_CHILD="2", RSN_LOG_JSON="true")
    proc = start_worker(env, concurrency=2, queues="events,email,sms,inapp",
                        logdir=str(tmp_path_factory.mktemp("logs")))
    yield proc, port, mdir
    proc.stop(20)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def db_count(sql: str, **params: Any) -> int:
    with session_scope() as s:
        return int(s.execute(text(sql), params).scalar_one())


def test_worker_metrics_count_every_pool_process_exactly(svc: Any, metrics_worker: Any) -> None:
    # given: a tenant's events over several messages (pool processes recycle meanwhile)
    _, port, mdir = metrics_worker
    t = uid("t-")
    ok = [event("label_created", tenant=t) for _ in range(6)]
    bad = [event("return_approved", tenant=t, email="fail-permanent@example.com", phone=None)
           for _ in range(2)]
    for chunk in (ok[:3], ok[3:], bad):
        publish_many(chunk)
    publish_many([ok[0]])  # a duplicate event id
    # when: everything settled
    wait_until(lambda: db_count(
        "SELECT count(*) FROM deliveries d JOIN tenants x ON x.id = d.tenant_id WHERE x.slug = :t "
        "AND d.state IN ('sent', 'failed')", t=t) == 6 * 3 + 2 * 2, what="deliveries settled")

    def counted() -> dict[Any, float] | None:
        s = scrape(port)
        return s if value(s, "rsn_tenant_deliveries_total", tenant=t) == 22 else None

    samples = wait_until(counted, timeout_s=10, what="metrics caught up")
    # then: the worker's one endpoint has every process's counts
    assert value(samples, "rsn_tenant_deliveries_total", tenant=t, outcome="sent") == 20
    assert value(samples, "rsn_tenant_deliveries_total", tenant=t, outcome="permanent") == 2
    assert value(samples, "rsn_deliveries_total", channel="email", provider="sandbox",
                 outcome="permanent") >= 2
    assert value(samples, "rsn_delivery_states_total", channel="email", state="failed") >= 2
    assert value(samples, "rsn_events_total", disposition="notified") >= 8
    assert value(samples, "rsn_events_total", disposition="duplicate") >= 1
    assert value(samples, "rsn_deliveries_created_total", channel="sms") >= 6
    sent = value(samples, "rsn_delivery_states_total", state="sent")
    assert value(samples, "rsn_notification_latency_seconds_count") == sent
    assert value(samples, "rsn_provider_call_seconds_count") >= 22  # sandbox + inbox
    assert not (mdir / "counter_999999.db").exists()


def test_queue_depth_reads_redis_with_the_key_prefix(svc: Any, metrics_worker: Any) -> None:
    # given: messages on a queue this worker does not consume
    from return_notify.config.celery import NOOP_TASK
    from return_notify.workers.app import app

    _, port, _ = metrics_worker
    for _ in range(3):
        app.send_task(NOOP_TASK, queue="maintenance", routing_key="maintenance")
    # then
    samples = scrape(port)
    assert value(samples, "rsn_queue_depth", queue="maintenance") == 3
    assert value(samples, "rsn_broker_up") == 1
    assert {ls for (n, ls) in samples if n == "rsn_queue_depth"} >= {
        (("queue", q),) for q in ("events", "email", "sms", "inapp")}


def test_worker_logs_are_json_lines_with_the_ids(svc: Any, metrics_worker: Any) -> None:
    # the worker above runs with RSN_LOG_JSON=true (the banner is printed, not logged)
    proc, _, _ = metrics_worker
    publish_many([event(tenant=uid("t-"))])

    def ingest_lines() -> list[dict[str, Any]]:
        out = []
        for line in proc.logfile.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return [o for o in out if o["logger"] == "return_notify.tasks.ingest"]

    rows = wait_until(ingest_lines, what="JSON log lines from the ingest task")
    assert {"ts", "level", "message", "event_id", "delivery_id", "task_id"} <= set(rows[0])
    assert "ana@example.com" not in proc.logfile.read_text()
