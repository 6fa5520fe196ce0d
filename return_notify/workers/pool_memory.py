"""Pool processes that grew in a backlog are replaced once the worker is idle again.

A pool process grows while it works off a backlog: batches of hundreds of events leave the
heap fragmented, and the periodic ``malloc_trim`` (``signals._trim_memory``) gives back
only part of it. Replacing the process by a fresh fork of the warm parent gives all of it
back, but a replacement costs its first tasks a new database connection, new provider
clients and a cold statement cache. Replaced after every task over a limit (Celery's
``worker_max_memory_per_child``), a 2-process pool at 1,000 events/s was replaced about
once a second and sent a fifth fewer notifications (measured, see docs/performance.md).

So there are two limits, both measured from the warm parent's size before the pool forks:

- the **idle limit** (``RSN_POOL_MEMORY_GROWTH_PCT``, 10 %): once the worker has had no task
  for ``IDLE_S`` seconds, each pool process above it is replaced; never in the middle of a
  backlog;
- the **hard limit** (``RSN_POOL_MEMORY_HARD_PCT``, 100 %): Celery's per-task check, for a
  process that keeps growing while the worker never goes idle.

The check runs in the worker's main process, on its event loop (the thread that also hands
tasks to the pool), so no task can be given to a process between the check and its
replacement. ``RSN_MAX_MEMORY_PER_CHILD_MIB`` set to a size keeps Celery's per-task
replacement at that size only, as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

#: How long the worker must have had no task (none reserved, none started) first.
IDLE_S = 4.0
#: How often the main process looks.
CHECK_EVERY_S = 1.0
#: A process that has used less CPU than this since its fork is left alone: it has not
#: worked through a backlog, so a fresh fork would be no smaller (if the main process grew,
#: its forks start above the limit, and replacing them would only repeat every quiet period).
MIN_CPU_S = 1.0

#: The idle limit in KiB, set before the pool forks (``workers.app._bound_pool_memory``).
_idle_limit_kib: int = 0


def set_idle_limit(kib: int) -> None:
    global _idle_limit_kib
    _idle_limit_kib = kib


class IdleRecycler:
    """Replaces grown pool processes of an idle worker (one per worker main process)."""

    def __init__(self, pool: Any, limit_kib: int | None = None, idle_s: float = IDLE_S,
                 clock: Any = time.monotonic, min_cpu_s: float = MIN_CPU_S) -> None:
        self.pool = pool
        self._limit_kib = limit_kib
        self.idle_s = idle_s
        self.min_cpu_s = min_cpu_s
        self.clock = clock
        self._last_count = -1
        self._quiet_since = clock()
        self.replaced = 0

    @property
    def limit_kib(self) -> int:
        """The given limit, else the one measured at start (the pool forks after this
        step is created)."""
        return self._limit_kib if self._limit_kib is not None else _idle_limit_kib

    def _processes(self) -> list[Any]:
        # billiard's pool keeps its processes in ``_pool``; Celery's autoscaler and
        # ``pool_restart`` reach them the same way
        inner = getattr(self.pool, "_pool", None)
        return list(getattr(inner, "_pool", None) or [])

    def tick(self) -> None:
        from celery.worker import state

        limit = self.limit_kib
        if not limit:
            return
        now = self.clock()
        count = sum(state.total_count.values())
        if state.reserved_requests or count != self._last_count:
            self._last_count, self._quiet_since = count, now
            return
        if now - self._quiet_since < self.idle_s:
            return
        self._quiet_since = now  # at most one round per quiet period of idle_s
        for proc in self._processes():
            rss_kib, cpu_s = _usage(proc.pid)
            if rss_kib > limit and cpu_s >= self.min_cpu_s and proc.is_alive():
                log.info("replacing idle pool process %s: %d MiB, over %d MiB", proc.pid,
                         rss_kib // 1024, limit // 1024)
                # a controlled termination: billiard forks its replacement from the warm
                # parent and logs no error; nothing is lost, as no task is reserved
                proc.terminate_controlled()
                self.replaced += 1


def _usage(pid: int | None) -> tuple[int, float]:
    """(RSS in KiB, CPU seconds used) of a pool process; (0, 0) once it is gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return int(proc.memory_info().rss // 1024), times.user + times.system
    except (psutil.Error, TypeError):
        return 0, 0.0


class PoolMemory(bootsteps.StartStopStep):
    """Worker bootstep: an ``IdleRecycler`` on the event loop of a prefork worker."""

    label = "Pool memory"
    conditional = True
    requires = ("celery.worker.components:Pool",)

    def __init__(self, w: Any, **_: Any) -> None:
        pool_cls = getattr(w, "pool_cls", None)
        self.enabled = bool(getattr(w, "use_eventloop", False)) and "prefork" in getattr(
            pool_cls, "__module__", "")
        w.pool_memory = None

    def create(self, w: Any) -> None:
        w.pool_memory = IdleRecycler(w.pool)

    def register_with_event_loop(self, w: Any, hub: Any) -> None:
        if w.pool_memory is not None:
            hub.call_repeatedly(CHECK_EVERY_S, w.pool_memory.tick)
