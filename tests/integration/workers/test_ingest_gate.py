"""The ingest gate (workers/ingest_gate.py): while another ingest batch of the worker is in
progress and the queue is short, an ingest task waits for it and then takes what arrived
meanwhile as one batch; in a backlog it does not wait. The lock itself between real
processes (a holder killed mid-batch releases it), then a real worker on real Redis and
PostgreSQL with the test holding its gate."""

from __future__ import annotations

import fcntl
import glob
import multiprocessing
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.config.settings import reset_settings
from return_notify.devtools.processes import Proc, start_worker
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from return_notify.workers import ingest_gate
from return_notify.workers.ingest_gate import BACKLOG, FREE, OFF, TIMEOUT, WAITED, hold
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration

_FORK = multiprocessing.get_context("fork")


@pytest.fixture
def gate(tmp_path: Any) -> str:
    path = str(tmp_path / "gate.lock")
    open(path, "w").close()
    return path


def _holder(path: str, held: Any, release: Any) -> None:
    """A process that holds the gate until ``release`` is set (or it is killed)."""
    with hold(lambda: 0, max_wait_s=5, backlog_limit=1, path=path) as how:
        assert how == FREE
        held.set()
        release.wait(30)


@pytest.fixture
def other_batch(gate: str) -> Iterator[tuple[Any, Any]]:
    """Another process in the middle of an ingest batch: it holds the gate."""
    held, release = _FORK.Event(), _FORK.Event()
    proc = _FORK.Process(target=_holder, args=(gate, held, release))
    proc.start()
    assert held.wait(10), "the other process never took the gate"
    yield proc, release
    release.set()
    proc.join(10)
    if proc.is_alive():
        proc.kill()


def test_a_free_gate_passes_at_once_and_no_gate_file_means_no_gate(gate: str) -> None:
    with hold(lambda: 0, max_wait_s=1, backlog_limit=1, path=gate) as how:
        assert how == FREE
    # outside a worker (no gate file), and with the setting at 0, nothing waits
    assert ingest_gate.gate_path() is None
    with hold(lambda: 0, max_wait_s=1, backlog_limit=1) as how:
        assert how == OFF
    with hold(lambda: 0, max_wait_s=0, backlog_limit=1, path=gate) as how:
        assert how == OFF
    with hold(lambda: 0, max_wait_s=1, backlog_limit=1,
              path=os.path.join(gate, "not-a-directory", "x.lock")) as how:
        assert how == OFF


def test_a_task_waits_for_the_other_batch_to_commit(
        gate: str, other_batch: tuple[Any, Any]) -> None:
    _proc, release = other_batch

    def short_queue() -> int:
        # asked only once the gate was found held: the other batch commits now
        release.set()
        return 0

    with hold(short_queue, max_wait_s=30, backlog_limit=10, path=gate) as how:
        assert how == WAITED


def test_a_backlog_does_not_wait_and_a_wait_is_bounded(
        gate: str, other_batch: tuple[Any, Any]) -> None:
    asked: list[int] = []

    def backlog() -> int:
        asked.append(1)
        return 40

    with hold(backlog, max_wait_s=30, backlog_limit=32, path=gate) as how:
        assert how == BACKLOG and asked == [1]
    # a short queue waits, but never past the bound
    with hold(lambda: 3, max_wait_s=0.05, backlog_limit=32, path=gate) as how:
        assert how == TIMEOUT

    def broken() -> int:
        raise ConnectionError("no Redis")

    # no queue length (Redis away): a bounded wait, as for a short queue
    with hold(broken, max_wait_s=0.05, backlog_limit=32, path=gate) as how:
        assert how == TIMEOUT


def _sleeping_holder(path: str, held: Any) -> None:
    """A process that holds the gate until it is killed (no event to leave half-set)."""
    with hold(lambda: 0, max_wait_s=5, backlog_limit=1, path=path) as how:
        assert how == FREE
        held.set()
        time.sleep(60)


def test_a_holder_killed_mid_batch_releases_the_gate(gate: str) -> None:
    held = _FORK.Event()
    proc = _FORK.Process(target=_sleeping_holder, args=(gate, held))
    proc.start()
    try:
        assert held.wait(10), "the other process never took the gate"
        with hold(lambda: 0, max_wait_s=0.05, backlog_limit=10, path=gate) as how:
            assert how == TIMEOUT  # held: the wait is in vain
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        with hold(lambda: 0, max_wait_s=30, backlog_limit=10, path=gate) as how:
            assert how == FREE
    finally:
        if proc.is_alive():
            proc.kill()


# ------------------------------------------------------------------ a real worker -----------


def _worker_gate(proc: Proc) -> str:
    found = glob.glob(os.path.join(tempfile.gettempdir(),
                                   f"rsn-ingest-gate-{proc.popen.pid}-*.lock"))
    assert len(found) == 1, found
    return found[0]


def _sent(tenant: str) -> int:
    with session_scope() as s:
        return int(s.execute(text(
            "SELECT count(*) FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
            "WHERE t.slug = :t AND d.state = 'sent'"), {"t": tenant}).scalar_one())


def _ingested(log: str, gate: str) -> list[int]:
    """The 'accepted' count of each ingest task that passed the gate as ``gate``."""
    return [int(m.group(1)) for m in re.finditer(
        r"ingested \{[^}]*'accepted': (\d+).*?'gate': '" + gate + "'", log)]


@pytest.fixture
def worker(svc: Any, tmp_path: Any) -> Iterator[tuple[Proc, str]]:
    proc = start_worker(svc.env(RSN_INGEST_GATE_WAIT_MS="10000", RSN_INGEST_GATE_BACKLOG="8"),
                        concurrency=2, logdir=str(tmp_path))
    try:
        yield proc, _worker_gate(proc)
    finally:
        proc.stop(20)


def test_events_that_arrive_during_a_batch_join_the_next_one(
        svc: Any, worker: tuple[Proc, str]) -> None:
    proc, path = worker
    tenant = uid("t-")
    # given: an ingest batch of this worker in progress (the test holds its gate)
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        # when: five events are published one by one meanwhile (a short queue)
        for _ in range(5):
            publish(event("label_created", tenant=tenant))
        time.sleep(1.5)
        # then: nothing was ingested past the gate
        assert _sent(tenant) == 0
    finally:
        os.close(fd)  # the batch commits
    wait_until(lambda: _sent(tenant) == 15, timeout_s=60, what="15 notifications sent")
    log = proc.logfile.read_text(encoding="utf-8")
    waited = _ingested(log, WAITED)
    # the five came in at most two batches (one per pool process), the first of them
    # holding what arrived while it waited
    assert sum(waited) == 5 and len(waited) <= 2, waited
    assert max(waited) >= 3, waited
    proc.stop(20)
    assert not os.path.exists(path), "the worker left its gate file behind"


def test_with_a_backlog_an_ingest_task_does_not_wait(
        svc: Any, gate: str, other_batch: tuple[Any, Any], monkeypatch: Any) -> None:
    from return_notify.tasks.ingest import ingest

    # given: another batch of the worker in progress and 11 event messages waiting
    tenant = uid("t-")
    events = [event("label_created", tenant=tenant) for _ in range(12)]
    for ev in events[1:]:
        publish(ev)
    monkeypatch.setattr(ingest_gate, "_path", gate)
    monkeypatch.setenv("RSN_INGEST_GATE_WAIT_MS", "10000")
    monkeypatch.setenv("RSN_INGEST_GATE_BACKLOG", "8")
    reset_settings()
    try:
        # when: an ingest task runs
        summary = ingest.run(events[0])
    finally:
        monkeypatch.undo()
        reset_settings()
    # then: it read the backlog from the queue and ingested it without waiting
    assert summary["gate"] == BACKLOG
    assert summary["drained"] >= 11 and summary["accepted"] >= 12
    with session_scope() as s:
        stored = s.execute(text(
            "SELECT count(*) FROM events e JOIN tenants t ON t.id = e.tenant_id "
            "WHERE t.slug = :t"), {"t": tenant}).scalar_one()
    assert stored == 12


def test_a_task_of_a_short_queue_waits_for_the_other_batch(
        svc: Any, gate: str, other_batch: tuple[Any, Any], monkeypatch: Any) -> None:
    import return_notify.tasks.ingest as ingest_task
    from return_notify.tasks.ingest import ingest

    _proc, release = other_batch
    tenant = uid("t-")
    queue_length = ingest_task._backlog

    def backlog() -> int:
        # the task found the gate held and reads the real queue (short): the other batch
        # commits while this one waits
        n = queue_length()
        release.set()
        return n

    monkeypatch.setattr(ingest_gate, "_path", gate)
    monkeypatch.setattr(ingest_task, "_backlog", backlog)
    monkeypatch.setenv("RSN_INGEST_GATE_WAIT_MS", "10000")
    reset_settings()
    try:
        summary = ingest.run(event("label_created", tenant=tenant))
    finally:
        monkeypatch.undo()
        reset_settings()
    assert summary["gate"] == WAITED and summary["accepted"] == 1


def test_by_default_there_is_no_gate_and_no_gate_file(svc: Any, tmp_path: Any) -> None:
    proc = start_worker(svc.env(), concurrency=2, logdir=str(tmp_path))
    try:
        assert glob.glob(os.path.join(tempfile.gettempdir(),
                                      f"rsn-ingest-gate-{proc.popen.pid}-*.lock")) == []
        tenant = uid("t-")
        publish(event("label_created", tenant=tenant))
        wait_until(lambda: _sent(tenant) == 3, timeout_s=60, what="3 notifications sent")
        log = proc.logfile.read_text(encoding="utf-8")
        outcomes = re.findall(r"'gate': '(\w+)'", log)
        assert outcomes and set(outcomes) == {OFF}, outcomes
    finally:
        proc.stop(20)
