"""The Redis Stream way in, as a producer without Python would use it: ``redis-cli XADD`` →
``streams listen`` subprocess → Celery worker subprocess → delivered notification."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.devtools.processes import Proc, start_worker, stop_process
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration

GROUP = "return-notify"
LISTENER_ENV = {"RSN_STREAM_CLAIM_IDLE_S": "1", "RSN_STREAM_CLAIM_INTERVAL_S": "0.5",
                "RSN_STREAM_BLOCK_MS": "200", "RSN_STREAM_MAX_DELIVERIES": "5"}


@pytest.fixture(scope="module")
def worker(services: Any, tmp_path_factory: Any) -> Iterator[Proc]:
    proc = start_worker(services.env(), concurrency=2, logdir=str(tmp_path_factory.mktemp("w")))
    yield proc
    proc.stop(20)


def listen(svc: Any, consumer: str, logdir: Path) -> Proc:
    """``streams listen`` as its own process (``return-notify streams listen`` once wired)."""
    ready, logfile = logdir / f"{consumer}.ready", logdir / f"{consumer}.log"
    env = {**os.environ, **svc.env(**LISTENER_ENV), "RSN_READY_FILE": str(ready),
           "PYTHONUNBUFFERED": "1"}
    with open(logfile, "ab") as fh:
        popen = subprocess.Popen(
            [sys.executable, "-m", "return_notify.cli.sources", "streams", "listen",
             "--consumer", consumer, "--batch", "50"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    proc = Proc("listener", popen, logfile)
    wait_until(lambda: ready.exists() or popen.poll() is not None, 30, what="listener ready")
    assert popen.poll() is None, proc.log_tail()
    return proc


def cli(svc: Any, *args: str) -> str:
    """``redis-cli`` against the test Redis: the only tool a non-Python producer needs."""
    done = subprocess.run(["redis-cli", "-u", svc.broker_url, *args], capture_output=True,
                          text=True, timeout=30, check=True)
    return done.stdout.strip()


def key(svc: Any) -> str:
    return f"{svc.redis_key_prefix}events:stream"


def deliveries(return_id: str) -> dict[str, str] | None:
    with session_scope() as s:
        rows = dict(s.execute(text(
            "SELECT d.channel, d.state FROM deliveries d JOIN returns r ON r.id = d.return_pk "
            "WHERE r.return_id = :r"), {"r": return_id}).all())
    return rows if rows and all(v == "sent" for v in rows.values()) else None


def dead_letters(svc: Any) -> list[dict[str, str]]:
    import redis

    r = redis.Redis.from_url(svc.broker_url, decode_responses=True)
    try:
        return [f for _, f in r.xrange(key(svc) + ":dead")]
    finally:
        r.close()


@pytest.fixture
def listener(svc: Any, worker: Proc, tmp_path: Path) -> Iterator[Proc]:
    proc = listen(svc, uid("live-"), tmp_path)
    yield proc
    stop_process(proc.popen, 20)


def test_redis_cli_xadd_reaches_the_customer(svc: Any, listener: Proc) -> None:
    # given: one event, and a batch of two in one entry
    tenant = uid("t-")
    one = event("return_approved", tenant=tenant)
    many = [event("refund_processed", tenant=tenant,
                  data={"refund_amount": "12.50", "currency": "EUR"}),
            event("label_created", tenant=tenant)]
    # when
    entry_id = cli(svc, "XADD", key(svc), "*", "event", json.dumps(one))
    cli(svc, "XADD", key(svc), "*", "events", json.dumps(many))
    # then
    assert "-" in entry_id
    assert wait_until(lambda: deliveries(one["return_id"]), what="approved sent") == {
        "email": "sent", "inapp": "sent"}
    for ev in many:
        wait_until(lambda ev=ev: deliveries(ev["return_id"]), what=f"{ev['milestone']} sent")
    wait_until(lambda: cli(svc, "XPENDING", key(svc), GROUP).startswith("0"),
               what="every entry acknowledged")


def test_bad_entries_never_block_the_stream(svc: Any, listener: Proc) -> None:
    tenant = uid("t-")
    invalid = event("return_approved", tenant=tenant, colour="red")  # unknown field
    after = event("return_approved", tenant=tenant)
    before_dead = len(dead_letters(svc))
    cli(svc, "XADD", key(svc), "*", "event", "{not json")
    cli(svc, "XADD", key(svc), "*", "payload", json.dumps(after))  # wrong field name
    cli(svc, "XADD", key(svc), "*", "event", json.dumps(invalid))
    cli(svc, "XADD", key(svc), "*", "event", json.dumps(after))
    wait_until(lambda: deliveries(after["return_id"]), what="the entry after the bad ones")

    def rejected() -> list[Any]:
        with session_scope() as s:
            return list(s.execute(text("SELECT errors FROM rejected_events WHERE event_id = :e"),
                                  {"e": invalid["event_id"]}).all())

    [(errors,)] = wait_until(rejected, what="contract violation recorded")
    assert errors[0]["field"] == "colour"
    dead = dead_letters(svc)[before_dead:]
    assert sorted(d["reason"].split(":")[0] for d in dead) == [
        "no 'event' or 'events' field (got ['payload'])", "not valid JSON"]
    assert {d.get("field:event") for d in dead} >= {"{not json"}
    out = subprocess.run([sys.executable, "-m", "return_notify.cli.sources", "streams", "dead",
                          "--json"], env={**os.environ, **svc.env()}, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert any(row.get("field:event") == "{not json" for row in json.loads(out))


def test_sigterm_is_a_warm_shutdown(svc: Any, worker: Proc, tmp_path: Path) -> None:
    proc = listen(svc, uid("short-"), tmp_path)
    time.sleep(0.5)
    assert stop_process(proc.popen, 20) == 0
    assert "stopped" in proc.log_tail()


def test_a_dead_consumers_entries_are_claimed_by_another(svc: Any, worker: Proc,
                                                        tmp_path: Path) -> None:
    # given: a listener that read two entries and died before acknowledging them
    first = listen(svc, uid("first-"), tmp_path)  # makes sure the group exists
    stop_process(first.popen, 20)
    ev = event("return_approved", tenant=uid("t-"))
    poison = event("return_approved", tenant=uid("t-"))
    cli(svc, "XADD", key(svc), "*", "event", json.dumps(ev))
    poison_id = cli(svc, "XADD", key(svc), "*", "event", json.dumps(poison))
    read = cli(svc, "XREADGROUP", "GROUP", GROUP, "crashed", "COUNT", "10", "STREAMS",
               key(svc), ">")
    assert ev["event_id"] in read
    # ... and the poison entry has already crashed consumers nine times
    cli(svc, "XCLAIM", key(svc), GROUP, "crashed", "0", poison_id, "RETRYCOUNT", "9")
    assert deliveries(ev["return_id"]) is None
    # when another listener runs
    second = listen(svc, uid("second-"), tmp_path)
    try:
        # then it claims the entries once idle > RSN_STREAM_CLAIM_IDLE_S
        wait_until(lambda: deliveries(ev["return_id"]), what="claimed entry delivered")
        wait_until(lambda: any(d["original_id"] == poison_id for d in dead_letters(svc)),
                   what="poison entry dead-lettered")
        assert deliveries(poison["return_id"]) is None
        assert "claimed" in second.log_tail(200)
        assert wait_until(lambda: cli(svc, "XPENDING", key(svc), GROUP).startswith("0"),
                          what="nothing left pending")
    finally:
        stop_process(second.popen, 20)
