"""Adaptive batching (workers/drain.py) on a real Redis and real worker processes: what a
task drains is recorded exactly as kombu records the messages its consumer holds, comes
back whole after a failure or a kill, and single publishes form batches by themselves."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.celery import DELIVER_TASK, INGEST_TASK, NOOP_TASK
from return_notify.devtools.processes import Proc, start_worker
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from return_notify.workers.drain import Drainer
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def app(svc: Any) -> Any:
    from return_notify.workers.app import app as celery_app

    return celery_app


def _queue(svc: Any) -> str:
    return uid("q-")  # a queue of its own: nothing else consumes it


def _send(app: Any, queue: str, args: list[Any], **opts: Any) -> None:
    app.send_task(DELIVER_TASK, args=args, queue=queue, routing_key=queue, **opts)


def test_drain_records_messages_as_kombu_does_and_skips_what_it_cannot_take(
        svc: Any, app: Any, r: Any) -> None:
    # given: a queue with deliver messages at three priorities, one with a countdown, and a
    # message of another task
    queue = _queue(svc)
    _send(app, queue, ["email", [3]], priority=6)
    _send(app, queue, ["email", [1]], priority=0)
    _send(app, queue, ["email", [2]], priority=3)
    _send(app, queue, ["email", [9]], countdown=30)
    app.send_task(NOOP_TASK, queue=queue, routing_key=queue)
    d = Drainer(r, queue, DELIVER_TASK, prefix=svc.redis_key_prefix)

    # when
    taken = d.take(10)

    # then: the three deliver calls, most urgent first; the others stay queued, untouched
    assert [m.args for m in taken] == [["email", [1]], ["email", [2]], ["email", [3]]]
    left = [json.loads(x)["headers"]["task"] for k in d.list_keys for x in r.lrange(k, 0, -1)]
    assert sorted(left) == sorted([DELIVER_TASK, NOOP_TASK])
    # each taken message sits in kombu's unacked hash as [payload, exchange, routing key]
    # and in its index, where restore_visible finds it
    for m in taken:
        stored = json.loads(r.hget(d.unacked, m.tag))
        assert stored[0] == json.loads(m.raw) and stored[2] == queue
        assert r.zscore(d.unacked_index, m.tag) is not None


def test_kombu_restores_a_drained_message_that_was_never_acknowledged(
        svc: Any, app: Any, r: Any) -> None:
    # given: a drained message whose task died before acknowledging it
    queue = _queue(svc)
    _send(app, queue, ["sms", [41, 42]])
    d = Drainer(r, queue, DELIVER_TASK, prefix=svc.redis_key_prefix)
    (m,) = d.take(5)
    # when: kombu's own restore (what restore_visible does once the message is older than
    # the visibility timeout)
    with app.connection_for_write() as conn:
        conn.default_channel.qos.restore_by_tag(m.tag)
    # then: it is back in its queue, whole, and consumable again
    (again,) = d.take(5)
    assert again.args == ["sms", [41, 42]] and again.tag == m.tag
    d.ack([again])
    assert r.hlen(d.unacked) == 0 or r.hget(d.unacked, m.tag) is None
    assert r.zscore(d.unacked_index, m.tag) is None


def test_restore_gives_drained_messages_back_first_in_line(svc: Any, app: Any, r: Any) -> None:
    queue = _queue(svc)
    for i in range(3):
        _send(app, queue, ["inapp", [i]])
    d = Drainer(r, queue, DELIVER_TASK, prefix=svc.redis_key_prefix)
    first = d.take(2)
    d.restore(first)
    again = d.take(3)
    assert [m.args[1] for m in again] == [[0], [1], [2]]
    assert all(r.hget(d.unacked, m.tag) for m in again)
    d.ack(again)
    assert all(r.hget(d.unacked, m.tag) is None for m in again)


def test_unreadable_message_of_the_task_goes_back_to_celery(svc: Any, r: Any) -> None:
    queue = _queue(svc)
    key = svc.redis_key_prefix + queue
    bogus = {"body": "not base64 json", "headers": {"task": DELIVER_TASK, "eta": None},
             "properties": {"delivery_tag": uid("tag-"), "body_encoding": "base64",
                            "delivery_info": {"exchange": "", "routing_key": queue}}}
    r.lpush(key, json.dumps(bogus))
    d = Drainer(r, queue, DELIVER_TASK, prefix=svc.redis_key_prefix)
    assert d.take(5) == []
    assert r.llen(key) == 1 and r.hget(d.unacked, bogus["properties"]["delivery_tag"]) is None


def test_single_publishes_form_batches_and_each_notification_goes_out_once(
        svc: Any, tmp_path: Any) -> None:
    # given: 120 events published one by one while no worker runs (a backlog)
    tenant = uid("t-")
    events = [event("label_created", tenant=tenant) for _ in range(120)]
    for ev in events:
        publish(ev)
    # when: a worker starts and works the backlog off
    proc: Proc = start_worker(svc.env(RSN_TASK_EVENTS="false"), concurrency=2,
                              logdir=str(tmp_path))
    try:
        def sent() -> int:
            with session_scope() as s:
                return int(s.execute(text(
                    "SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                    "WHERE t.slug = :t AND d.state = 'sent'"), {"t": tenant}).scalar_one())
        wait_until(lambda: sent() == 360, timeout_s=90, what="360 notifications sent")
        time.sleep(0.5)
    finally:
        proc.stop(20)
    # then: each notification reached the provider once, and the tasks drained messages
    with session_scope() as s:
        dup = s.execute(text(
            "SELECT count(*) FROM (SELECT delivery_id FROM sandbox_messages m JOIN deliveries d "
            "ON d.id = m.delivery_id JOIN tenants t ON t.id = d.tenant_id WHERE t.slug = :t "
            "GROUP BY delivery_id HAVING count(*) > 1) x"), {"t": tenant}).scalar_one()
    assert dup == 0
    log = proc.logfile.read_text(encoding="utf-8")
    assert "'drained':" in log, "no task drained a waiting message"


def test_monitors_see_each_drained_message_as_a_succeeded_task(
        svc: Any, app: Any, tmp_path: Any) -> None:
    # given: 40 single-event ingest messages waiting, each with its own task id
    tenant = uid("t-")
    ids = {app.send_task(INGEST_TASK, args=[[event("return_initiated", tenant=tenant)]],
                         queue="events", routing_key="events").id for _ in range(40)}
    seen: set[str] = set()
    stop = threading.Event()

    def listen() -> None:
        with app.connection_for_read() as conn:
            recv = app.events.Receiver(conn, handlers={
                "task-succeeded": lambda e: seen.add(e["uuid"])})
            while not stop.is_set():
                with contextlib.suppress(TimeoutError, OSError):
                    recv.capture(limit=None, timeout=0.5, wakeup=False)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.5)  # the receiver's queue is bound before the worker starts
    # when: a worker with task events on (Flower's source) works them off
    proc: Proc = start_worker(svc.env(RSN_TASK_EVENTS="true"), concurrency=1,
                              logdir=str(tmp_path))
    try:
        wait_until(lambda: ids <= seen, timeout_s=60,
                   what="a task-succeeded event for every message")
    finally:
        stop.set()
        proc.stop(20)
    # then: every message, drained or not, was announced under its own id
    assert ids <= seen
    assert "'drained':" in proc.logfile.read_text(encoding="utf-8")
