"""workers.pool_memory: a pool process that grew is replaced once the worker has been idle,
never while a task is reserved or just after one started. Real billiard pool processes (the
pool Celery's prefork workers use) and Celery's worker state; the clock is the test's."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import billiard.pool
import psutil
import pytest
from celery.worker import state

from return_notify.workers.pool_memory import IdleRecycler
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

_ballast: bytes = b""


def _grow(mib: int, cpu_s: float = 0.0) -> int:
    """Runs in a pool process: keeps ``mib`` MiB of touched memory alive there, after
    ``cpu_s`` seconds of work."""
    global _ballast
    deadline = time.process_time() + cpu_s
    while time.process_time() < deadline:
        pass
    _ballast = b"x" * (mib * 2**20)
    return os.getpid()


def _rss_kib(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss // 1024)


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class _TaskPool:
    """What Celery's prefork TaskPool holds: the billiard pool, as ``_pool``."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool


@pytest.fixture
def pool() -> Iterator[Any]:
    p = billiard.pool.Pool(2)
    try:
        yield p
    finally:
        p.terminate()
        p.join()


def test_a_grown_process_is_replaced_only_once_the_worker_is_idle(
        pool: Any, monkeypatch: Any) -> None:
    pids = {p.pid for p in pool._pool}
    grown = pool.apply(_grow, (96, 1.2))
    other = next(pid for pid in pids if pid != grown)
    limit = _rss_kib(other) + 48 * 1024
    assert _rss_kib(grown) > limit > _rss_kib(other)

    clock = _Clock()
    recycler = IdleRecycler(_TaskPool(pool), limit_kib=limit, idle_s=4.0, clock=clock,
                            min_cpu_s=1.0)
    monkeypatch.setattr(state, "total_count", Counter({"ingest": 1}))

    # a reserved task: however long, nothing is replaced
    monkeypatch.setattr(state, "reserved_requests", {object()})
    for _ in range(3):
        clock.t += 60
        recycler.tick()
    assert recycler.replaced == 0

    # nothing reserved: the quiet period starts now
    monkeypatch.setattr(state, "reserved_requests", set())
    recycler.tick()
    clock.t += 3
    recycler.tick()
    assert recycler.replaced == 0  # 3 s idle is not enough

    # a task started and finished between two looks: the quiet period starts again
    monkeypatch.setattr(state, "total_count", Counter({"ingest": 2}))
    clock.t += 3
    recycler.tick()
    clock.t += 3
    recycler.tick()
    assert recycler.replaced == 0

    clock.t += 1.5  # 4.5 s without a task
    recycler.tick()
    assert recycler.replaced == 1

    # billiard forks the replacement; the process under the limit stays
    wait_until(lambda: grown not in {p.pid for p in pool._pool} and len(pool._pool) == 2
               and all(p.is_alive() for p in pool._pool), timeout_s=30)
    now = {p.pid for p in pool._pool}
    assert other in now
    (fresh,) = now - {other}
    assert _rss_kib(fresh) < limit
    assert pool.apply(os.getpid) in now  # the pool still works

    # once replaced, the next quiet period replaces nothing more
    clock.t += 10
    recycler.tick()
    clock.t += 10
    recycler.tick()
    assert recycler.replaced == 1


def test_without_a_limit_nothing_is_replaced(pool: Any, monkeypatch: Any) -> None:
    pool.apply(_grow, (64,))
    clock = _Clock()
    monkeypatch.setattr(state, "reserved_requests", set())
    monkeypatch.setattr(state, "total_count", Counter())
    recycler = IdleRecycler(_TaskPool(pool), limit_kib=0, clock=clock)
    for _ in range(5):
        recycler.tick()
        clock.t += 10
    assert recycler.replaced == 0
    assert all(p.is_alive() for p in pool._pool)


def test_a_process_that_has_not_worked_is_left_alone(pool: Any, monkeypatch: Any) -> None:
    """Over the limit without having worked (as every fork is when the main process grew):
    replacing it would give nothing back and would repeat every quiet period."""
    grown = pool.apply(_grow, (96, 0.0))
    clock = _Clock()
    monkeypatch.setattr(state, "reserved_requests", set())
    monkeypatch.setattr(state, "total_count", Counter())
    recycler = IdleRecycler(_TaskPool(pool), limit_kib=_rss_kib(grown) // 2, clock=clock,
                            min_cpu_s=1.0)
    for _ in range(5):
        recycler.tick()
        clock.t += 10
    assert recycler.replaced == 0
    assert grown in {p.pid for p in pool._pool}
