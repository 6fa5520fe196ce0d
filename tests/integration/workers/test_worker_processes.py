"""End to end through real Celery worker processes, beat and the CLI, on real Redis/PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.settings import get_settings
from return_notify.devtools.processes import Proc, start_beat, start_worker
from return_notify.errors import PublishError
from return_notify.producer import publish, publish_many
from return_notify.storage.db import session_scope
from tests.helpers import event, later, uid, wait_until
from tests.integration.cli_helpers import run_cli

pytestmark = pytest.mark.integration

WORKER_ENV = {"RSN_MAX_ATTEMPTS": "3", "RSN_BACKOFF_BASE_S": "0.2", "RSN_BACKOFF_MAX_S": "0.5",
              "RSN_SWEEP_INTERVAL_S": "1", "RSN_LEASE_S": "2"}


@pytest.fixture(scope="module")
def worker(services: Any, tmp_path_factory: Any) -> Iterator[Proc]:
    logdir = str(tmp_path_factory.mktemp("logs"))
    proc = start_worker(services.env(**WORKER_ENV), concurrency=2, logdir=logdir)
    yield proc
    proc.stop(20)
    assert proc.popen.returncode is not None


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def delivery_states(return_id: str) -> dict[str, str]:
    rows = q("SELECT d.channel, d.state FROM deliveries d JOIN returns r ON r.id = d.return_pk "
             "WHERE r.return_id = :r", r=return_id)
    return dict(rows)


def settled(return_id: str, n: int) -> dict[str, str] | None:
    st = delivery_states(return_id)
    if len(st) == n and all(s not in ("pending", "sending", "retrying") for s in st.values()):
        return st
    return None


def test_published_event_reaches_every_channel_through_the_workers(svc: Any, worker: Proc) -> None:
    ev = event("refund_processed", tenant=uid("t-"),
               data={"refund_amount": "49.90", "currency": "USD", "refund_method": "store_credit"})
    publish(ev)
    st = wait_until(lambda: settled(ev["return_id"], 3), what="3 deliveries settled")
    assert st == {"email": "sent", "sms": "sent", "inapp": "sent"}
    body = q("SELECT s.body FROM sandbox_messages s JOIN deliveries d ON d.id = s.delivery_id "
             "JOIN returns r ON r.id = d.return_pk WHERE r.return_id = :r AND d.channel = 'sms'",
             r=ev["return_id"])
    assert "$49.90" in body[0][0]


def test_the_worker_measures_its_pool_memory_limits_before_the_pool_forks(
        worker: Proc) -> None:
    """workers.pool_memory is a step of the real worker: both limits come from the warm
    parent's size (RSN_POOL_MEMORY_GROWTH_PCT once idle, RSN_POOL_MEMORY_HARD_PCT per task)."""
    import re

    log = worker.logfile.read_text(errors="replace")
    m = re.search(r"replaced once idle above (\d+) MiB, or after its task above (\d+) MiB "
                  r"\(warm size (\d+) MiB \+ 10% / 100%\)", log)
    assert m, log[-2000:]
    idle, hard, warm = (int(g) for g in m.groups())
    assert warm < idle < hard and abs(hard - 2 * warm) <= 1


def test_transient_then_sent_and_exhausted_then_dead_via_celery(svc: Any, worker: Proc) -> None:
    t = uid("t-")
    ok = event("label_created", tenant=t, email="fail-transient-2@example.com", phone=None)
    dead = event("label_created", tenant=t, email="fail-always@example.com", phone=None)
    publish_many([ok, dead])
    wait_until(lambda: settled(ok["return_id"], 2), what="retried delivery settled")
    wait_until(lambda: settled(dead["return_id"], 2), what="dead delivery settled")
    assert delivery_states(ok["return_id"])["email"] == "sent"
    assert delivery_states(dead["return_id"])["email"] == "dead"
    attempts = q("SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = "
                 "a.delivery_id JOIN returns r ON r.id = d.return_pk WHERE r.return_id = :r "
                 "AND d.channel = 'email'", r=dead["return_id"])
    assert attempts == [(3,)]


def test_invalid_messages_never_stop_the_worker(svc: Any, worker: Proc) -> None:
    from return_notify.workers.app import app

    t = uid("t-")
    # a producer in another language sends garbage straight onto the queue
    app.send_task("return_notify.ingest", args=[[{"tenant": t, "event_id": "x1", "bogus": 1}]],
                  queue="events")
    app.send_task("return_notify.ingest", args=["just a string"], queue="events")
    good = event(tenant=t)
    publish(good)
    wait_until(lambda: settled(good["return_id"], 2), what="valid event after garbage")
    rows = q("SELECT event_id, errors FROM rejected_events WHERE tenant = :t", t=t)
    assert rows and rows[0][0] == "x1"
    assert any(e["field"] == "bogus" for e in rows[0][1])
    assert worker.popen.poll() is None


def test_the_same_delivery_enqueued_many_times_sends_once(svc: Any, worker: Proc) -> None:
    from return_notify.pipeline.ingest import ingest_batch
    from return_notify.workers.app import enqueue_deliveries

    ev = event("exception", tenant=uid("t-"), data={"reason": "Parcel lost"})
    with session_scope() as s:
        r = ingest_batch(s, [ev])
    for _ in range(5):
        enqueue_deliveries(dict(r.deliveries))
    wait_until(lambda: settled(ev["return_id"], 3), what="deliveries settled")
    ids = [i for v in r.deliveries.values() for i in v]
    time.sleep(1.0)  # let the redundant messages run too
    # email and sms went to the sandbox provider, in-app to the inbox
    sends = q("SELECT delivery_id, count(*) FROM (SELECT delivery_id FROM sandbox_messages "
              "UNION ALL SELECT delivery_id FROM inbox_items) x WHERE delivery_id = ANY(:i) "
              "GROUP BY 1", i=ids)
    assert sorted(sends) == sorted((i, 1) for i in ids)


def test_beat_sweeper_recovers_lost_messages_and_replay_revives_dead(
    svc: Any, worker: Proc, tmp_path: Any
) -> None:
    from return_notify.pipeline.ingest import ingest_batch

    ev = event("return_approved", tenant=uid("t-"), email="fail-transient-3@example.com")
    with session_scope() as s:  # stored but never enqueued: its message was "lost"
        r = ingest_batch(s, [ev])
    beat = start_beat(svc.env(**WORKER_ENV), logdir=str(tmp_path))
    try:
        st = wait_until(lambda: settled(ev["return_id"], 2), timeout_s=40, what="swept")
    finally:
        beat.stop(10)
    assert st == {"email": "dead", "inapp": "sent"}  # 3 transient failures = budget spent
    out = run_cli("dlq", "list", "--json", env=svc.env())
    assert r.deliveries["email"][0] in [d["id"] for d in json.loads(out)]
    out = run_cli("dlq", "replay", str(r.deliveries["email"][0]), "--json", env=svc.env())
    assert json.loads(out)["replayed"] == 1
    wait_until(lambda: delivery_states(ev["return_id"]).get("email") == "sent", what="replayed")


def test_emit_reports_bad_lines_and_publishes_the_good_ones(svc: Any, worker: Proc,
                                                            tmp_path: Any) -> None:
    t = uid("t-")
    good = [event(tenant=t), event("label_created", tenant=t)]
    lines = [json.dumps(good[0]), '{"event_id": "broken", "tenant": "' + t + '"}', "not json",
             json.dumps(good[1])]
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([sys.executable, "-m", "return_notify.cli", "emit", str(f), "--json"],
                          env={**os.environ, **svc.env()}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    assert report["published"] == 2
    assert [e["line"] for e in report["invalid"]] == [2, 3]
    for ev in good:
        wait_until(lambda ev=ev: settled(ev["return_id"], 2 if ev["milestone"] != "label_created"
                                         else 3), what="emitted events delivered")


def test_stats_and_deliveries_cli_json(svc: Any, worker: Proc) -> None:
    ev = event("warehouse_received", tenant=uid("t-"))
    publish(ev)
    wait_until(lambda: settled(ev["return_id"], 2), what="settled")
    stats = json.loads(run_cli("stats", "--json", "--tenant", ev["tenant"], env=svc.env()))
    assert stats["deliveries"]["by_channel"] == {"email": {"sent": 1}, "inapp": {"sent": 1}}
    assert stats["latency_s"]["occurred_to_sent_p50"] is not None
    rows = json.loads(run_cli("deliveries", "list", "--tenant", ev["tenant"], "--json",
                              env=svc.env()))
    assert {r["channel"] for r in rows} == {"email", "inapp"}
    assert rows[0]["recipient"] != "ana@example.com"  # masked in listings
    one = json.loads(run_cli("deliveries", "show", str(rows[0]["id"]), "--json", env=svc.env()))
    assert one["attempts_log"][0]["outcome"] == "sent"
    assert ev["return_id"] in one["body"]


def test_producer_against_a_stopped_broker_raises_publish_error(svc: Any) -> None:
    from return_notify.config.settings import Settings

    dead = Settings(broker_url="redis://127.0.0.1:1/0")
    t0 = time.monotonic()
    with pytest.raises(PublishError, match="unreachable") as info:
        publish(event(), settings=dead)
    assert info.value.published == 0
    assert time.monotonic() - t0 < 30  # bounded retries, then a clear error


def test_out_of_order_through_workers_never_sends_stale(svc: Any, worker: Proc) -> None:
    t, rid = uid("t-"), uid("RMA-")
    publish(event("refund_processed", tenant=t, return_id=rid, at=later(0)))
    wait_until(lambda: settled(rid, 3), what="refund settled")
    publish(event("in_transit", tenant=t, return_id=rid, at=later(-600)))
    wait_until(lambda: q("SELECT disposition FROM events e JOIN returns r ON r.id = e.return_pk "
                         "WHERE r.return_id = :r AND e.milestone = 'in_transit'", r=rid),
               what="stale event recorded")
    assert q("SELECT count(*) FROM deliveries d JOIN returns r ON r.id = d.return_pk WHERE "
             "r.return_id = :r AND d.milestone = 'in_transit'", r=rid) == [(0,)]


def test_settings_keep_countdowns_under_the_visibility_timeout(svc: Any) -> None:
    s = get_settings()
    assert s.max_countdown_s + s.task_time_limit_s < s.visibility_timeout_s
