"""Prometheus metrics of a real prefork worker: every pool process counted, recycled ones too."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from return_notify.devtools.processes import Proc, start_worker
from return_notify.producer import publish_many
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until
from tests.integration.provider_helpers import free_port

pytestmark = pytest.mark.integration

#: the one tenant the module's worker rate-limits: 1 send an hour (burst 1), so of its
#: event's three deliveries exactly one goes out and two wait (beyond any countdown)
THROTTLED = uid("rl-")


@pytest.fixture(scope="module")
def metrics_worker(services: Any, tmp_path_factory: Any) -> Iterator[tuple[Proc, int, Any]]:
    port = free_port()
    mdir = tmp_path_factory.mktemp("prom")
    (mdir / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: wiped at start
    env = services.env(RSN_METRICS_PORT=str(port), RSN_METRICS_DIR=str(mdir),
                       # recycle pool processes after 2 tasks: their counts must survive
                       RSN_MAX_TASKS_PER_CHILD="2", RSN_LOG_JSON="true",
                       # email and SMS by deliver tasks of their own (as the compose file's
                       # per-queue workers do), not inline: their tasks' logs and metrics
                       RSN_INGEST_INLINE_MAX="0",
                       RSN_RATE_LIMITS=f"tenant:{THROTTLED}=1/h:1")
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
    # every ingest task passes the worker's ingest gate, which is off by default
    assert value(samples, "rsn_ingest_gate_total", outcome="off") >= 1
    assert value(samples, "rsn_ingest_gate_total", outcome="waited") == 0
    assert value(samples, "rsn_deliveries_planned_total", channel="sms") >= 6
    # the source lag of every event stored (tests/helpers' events come from "test")
    assert value(samples, "rsn_source_lag_seconds_count", source="other") >= 8
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


def test_a_throttled_send_counts_a_rate_limit_wait(svc: Any, metrics_worker: Any) -> None:
    # given: a tenant whose bucket holds one token an hour, and one event for it that
    # makes three deliveries (email, sms, inapp), each in its own deliver task
    _, port, _ = metrics_worker
    before = scrape(port)
    publish_many([event("label_created", tenant=THROTTLED)])
    # when: one went out, two wait for a token
    wait_until(lambda: db_count(
        "SELECT count(*) FROM deliveries d JOIN tenants x ON x.id = d.tenant_id WHERE x.slug = :t "
        "AND d.state = 'retrying' AND d.last_error LIKE 'rate limited%'", t=THROTTLED) == 2,
        what="two deliveries held back by the rate limiter")
    assert db_count("SELECT count(*) FROM deliveries d JOIN tenants x ON x.id = d.tenant_id "
                    "WHERE x.slug = :t AND d.state = 'sent'", t=THROTTLED) == 1

    def counted() -> dict[Any, float] | None:
        s = scrape(port)
        waits = value(s, "rsn_rate_limit_waits_total") - value(before, "rsn_rate_limit_waits_total")
        return s if waits >= 2 else None

    samples = wait_until(counted, timeout_s=10, what="rate-limit waits counted")
    # then: two waits on the tenant's bucket (no other limit is configured), each ~1 hour
    new = {ls: v - before.get((n, ls), 0.0) for (n, ls), v in samples.items()
           if n == "rsn_rate_limit_waits_total" and v - before.get((n, ls), 0.0)}
    assert sum(new.values()) == 2
    assert all(dict(ls)["limit"] == "tenant" for ls in new)
    assert {dict(ls)["provider"] for ls in new} <= {"sandbox", "inbox"}
    waited = (value(samples, "rsn_rate_limit_wait_seconds_total", limit="tenant")
              - value(before, "rsn_rate_limit_wait_seconds_total", limit="tenant"))
    assert 2 * 3000 < waited <= 2 * 3600


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.logfile.read_text().splitlines()
            if line.startswith("{")]


def test_worker_logs_are_json_lines_with_the_ids(svc: Any, metrics_worker: Any) -> None:
    # the worker above runs with RSN_LOG_JSON=true (the banner is printed, not logged)
    proc, _, _ = metrics_worker
    ev = event("label_created", tenant=uid("t-"), email="ana.lopez@example.com",
               phone="+14155550123")
    publish_many([ev])
    ids = wait_until(lambda: (lambda sent: sent if len(sent) == 3 else None)(
        [i for i in _delivery_ids(ev["event_id"]) if db_count(
            "SELECT count(*) FROM deliveries WHERE id = :i AND state = 'sent'", i=i)]),
        what="the event's three deliveries sent")

    def inapp_id() -> int:
        with session_scope() as s:
            return int(s.execute(text(
                "SELECT id FROM deliveries WHERE id = ANY(:ids) AND channel = 'inapp'"),
                {"ids": ids}).scalar_one())

    # the in-app notification is delivered by the ingest task itself (inline); email and
    # SMS by deliver tasks of their own
    inapp = inapp_id()
    queued = set(ids) - {inapp}

    def lines_for_all() -> list[dict[str, Any]] | None:
        out = json_lines(proc)
        mine = [o for o in out if o.get("event_id") == ev["event_id"]]
        said = {o["delivery_id"] for o in mine if o["logger"] == "return_notify.tasks.deliver"}
        done = {o.get("delivery_id") for o in out if o["logger"] == "celery.app.trace"
                and "succeeded" in o["message"]}
        return out if said >= set(ids) and done >= queued else None

    out = wait_until(lines_for_all, what="JSON log lines of the event and its deliveries")
    # then: every line has the keys, the ingest line names the event and its deliveries
    for o in out:
        assert {"ts", "level", "logger", "message", "event_id", "delivery_id"} <= set(o)
    ingest = [o for o in out if o["logger"] == "return_notify.tasks.ingest"
              and o["event_id"] == ev["event_id"]]
    assert len(ingest) == 1 and sorted(ingest[0]["delivery_ids"]) == ids
    # each delivery's own line: its ids, the state it reached and the provider
    for did in ids:
        said = [o for o in out if o["delivery_id"] == did
                and o["logger"] == "return_notify.tasks.deliver"]
        assert len(said) == 1 and said[0]["event_id"] == ev["event_id"], said
        provider = "inbox" if said[0]["message"].startswith("inapp") else "sandbox"
        assert said[0]["message"].endswith(f"delivery {did} sent via {provider}"), said
    # the in-app line was written by the ingest task
    inline = [o for o in out if o["delivery_id"] == inapp
              and o["logger"] == "return_notify.tasks.deliver"]
    assert inline[0].get("task_id") and inline[0]["task_id"] == ingest[0].get("task_id"), inline
    # every line the pool processes wrote while running the deliver tasks (Celery's own
    # lines about them too) carries a delivery id; the main process only logs "received"
    task_ids = {o["task_id"] for o in out if o.get("delivery_id") in queued and o.get("task_id")}
    about = [o for o in out if o.get("task_id") in task_ids or (
        o["logger"] == "celery.app.trace" and any(t in o["message"] for t in task_ids))]
    assert len(about) >= 2 * len(queued)
    assert all(o["delivery_id"] in queued for o in about), [o for o in about
                                                            if o["delivery_id"] not in queued]
    text_ = proc.logfile.read_text()
    assert "ana.lopez@example.com" not in text_ and "+14155550123" not in text_


def _delivery_ids(event_id: str) -> list[int]:
    with session_scope() as s:
        return [int(i) for i in s.execute(text(
            "SELECT d.id FROM deliveries d JOIN events e ON e.id = d.event_pk "
            "WHERE e.event_id = :e ORDER BY d.id"), {"e": event_id}).scalars()]


_OPEN_BREAKER = """
from return_notify.observability.metrics import observe_breaker
observe_breaker("twilio", True)
"""


def test_a_pool_process_killed_with_sigkill_no_longer_holds_its_breaker_open(
    maintenance_worker: tuple[Proc, int, Any], tmp_path: Any,
) -> None:
    # given: a pool process of a worker (no recycling) whose gauge says its Twilio breaker is
    # open (written as that process would: a live-max gauge file named by its pid)
    import os
    import signal
    import subprocess
    import sys

    import psutil

    proc, port, mdir = maintenance_worker
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    victim = psutil.Process(proc.popen.pid).children()[0].pid
    subprocess.run([sys.executable, "-c", _OPEN_BREAKER], check=True, timeout=60,
                   env={**os.environ, "RSN_METRICS_PORT": "1",
                        "PROMETHEUS_MULTIPROC_DIR": str(scratch)})
    (written,) = scratch.glob("gauge_livemax_*.db")
    written.rename(mdir / f"gauge_livemax_{victim}.db")
    assert value(scrape(port), "rsn_provider_breaker_open", provider="twilio") == 1
    # when: the pool process is killed without a word (OOM killer, kill -9)
    os.kill(victim, signal.SIGKILL)
    def gone() -> bool:
        try:  # a pool process may exit while it is looked at: look again
            return victim not in {c.pid for c in psutil.Process(proc.popen.pid).children()
                                  if c.status() != psutil.STATUS_ZOMBIE}
        except psutil.NoSuchProcess:
            return False

    wait_until(gone, what="the pool process gone")
    # then: the next scrape no longer reports the provider paused
    assert value(scrape(port), "rsn_provider_breaker_open", provider="twilio") == 0
    assert not (mdir / f"gauge_livemax_{victim}.db").exists()


def test_the_maintenance_worker_reports_how_long_the_oldest_due_delivery_waited(
    svc: Any, maintenance_worker: tuple[Proc, int, Any],
) -> None:
    # given: an email delivery created ten minutes ago and never sent (no worker consumes
    # its queue here), and nothing of sms waiting for a while
    from return_notify.pipeline.ingest import ingest_batch

    _, port, _ = maintenance_worker
    with session_scope() as s:
        result = ingest_batch(s, [event("label_created", tenant=uid("t-"))])
    (did,) = result.deliveries["email"]
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET updated_at = now() - interval '600 seconds' "
                       "WHERE id = :d"), {"d": did})
    # when
    samples = scrape(port)
    # then
    assert value(samples, "rsn_backlog_up") == 1
    assert value(samples, "rsn_backlog_age_seconds", channel="email") >= 600
    assert {dict(ls)["channel"] for (n, ls) in samples if n == "rsn_backlog_age_seconds"} >= {
        "email", "sms", "inapp"}
    with session_scope() as s:  # leave nothing due behind for the other tests
        s.execute(text("UPDATE deliveries SET state = 'skipped' WHERE event_pk = "
                       "(SELECT event_pk FROM deliveries WHERE id = :d)"), {"d": did})
