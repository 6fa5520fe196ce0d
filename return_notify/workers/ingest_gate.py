"""One batch at a time per worker while its queue is short: the ingest gate (opt-in).

A batch costs a fixed price (Celery's trace and task events, the ingest transaction, the
claim and write-back of its inline deliveries: about 11 ms of CPU for a lone event) plus
about 1 ms per event. With two pool processes, every event that arrives while one process
is busy starts a batch of its own on the other, so at a steady 200 events/s the batches
stay at two or three events and the fixed price is paid over and over.

With the gate (``RSN_INGEST_GATE_WAIT_MS`` > 0), an ingest task that finds another batch of
its worker in progress (its ingest or its inline deliveries) waits until that one is done
(at most ``RSN_INGEST_GATE_WAIT_MS``), then drains what arrived meanwhile: one batch
instead of several. When the queue holds a backlog (``RSN_INGEST_GATE_BACKLOG`` messages or
more) there is no waiting: every process ingests in parallel, as without the gate.
Measured (``docs/performance.md``): about 30 % less worker CPU per notification at a steady
200 events/s and 10 % less at 500, for a few milliseconds more latency; the default (0)
keeps the latency.

The gate is an advisory ``flock`` on a file named after the worker (created at worker
start, removed at shutdown): the pool processes inherit its path, a process killed while
holding it releases it with its last descriptor, and it never crosses to another worker or
machine. Guarantees are those of the ingest task: the gate changes when a batch starts,
never what it commits or acknowledges.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

__all__ = ["FREE", "BACKLOG", "OFF", "TIMEOUT", "WAITED", "close_for_worker", "gate_path",
           "hold", "open_for_worker"]

#: how an ingest task passed the gate
FREE, WAITED, BACKLOG, TIMEOUT, OFF = "free", "waited", "backlog", "timeout", "off"

#: this worker's gate file: set in the worker's main process, inherited by its pool
_path: str | None = None


def open_for_worker() -> str:
    """Create this worker's gate file (its main process, before the pool starts)."""
    global _path
    path = os.path.join(tempfile.gettempdir(),
                        f"rsn-ingest-gate-{os.getpid()}-{uuid.uuid4().hex[:8]}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    _path = path
    return path


def close_for_worker() -> None:
    """Remove this worker's gate file (worker shutdown)."""
    global _path
    path, _path = _path, None
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def gate_path() -> str | None:
    """The gate file of the worker this process belongs to (None outside a worker)."""
    return _path


@contextlib.contextmanager
def hold(backlog: Callable[[], int], *, max_wait_s: float, backlog_limit: int,
         path: str | None = None) -> Iterator[str]:
    """Pass the gate for the body of the ``with``; yields how (``FREE``: nobody held it;
    ``WAITED``: another batch committed first; ``BACKLOG``: ``backlog()`` messages wait, so
    no wait; ``TIMEOUT``: waited ``max_wait_s`` in vain; ``OFF``: no gate here). Only
    ``FREE`` and ``WAITED`` hold it; any trouble with the file passes without it."""
    path = path or _path
    if not path or max_wait_s <= 0:
        yield OFF
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        log.warning("ingest gate %s unusable; ingesting without it", path, exc_info=True)
        yield OFF
        return
    try:
        yield _acquire(fd, backlog, max_wait_s, backlog_limit)
    finally:
        os.close(fd)  # releases the lock, if held


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _acquire(fd: int, backlog: Callable[[], int], max_wait_s: float,
             backlog_limit: int) -> str:
    if _try(fd):
        return FREE
    try:
        if backlog() >= backlog_limit:
            return BACKLOG
    except Exception:  # noqa: BLE001 - no queue length: wait, bounded, as for a short queue
        log.debug("could not read the events backlog", exc_info=True)
    deadline = time.monotonic() + max_wait_s
    pause = 0.0002
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return TIMEOUT
        time.sleep(min(pause, remaining))
        if _try(fd):
            return WAITED
        pause = min(0.002, pause * 2)
