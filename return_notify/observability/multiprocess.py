"""Prometheus multiprocess mode, shared by the workers and the API: the directory, the switch,
the endpoint, and a collector that forgets the live gauges of processes that are gone.

Several processes (a worker's prefork pool, ``api --workers N``) each write their values to
memory-mapped files in one directory; one process, the parent that started the others,
serves ``/metrics`` summing them. Counters and histograms of a process that exited stay (its
counts happened); gauges in a ``live*`` mode (``rsn_provider_breaker_open``, requests in
progress) must not: prometheus_client drops them only when told (``mark_process_dead``), and
a process killed by SIGKILL or the OOM killer never tells it. ``LiveProcessCollector`` looks
at every scrape which processes still run (this process and its descendants) and drops the
live gauges of every other pid.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

_LIVE_FILE = re.compile(r"^gauge_live[a-z]*_(\d+)\.db$")


def prepare_dir(configured: str | None) -> tuple[str, bool]:
    """The directory to use (``configured``, else ``PROMETHEUS_MULTIPROC_DIR``, else a new
    temporary one), created and emptied of a previous run's files; and whether we created it."""
    path = configured or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    owned = not path
    if not path:
        path = tempfile.mkdtemp(prefix="rsn-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)  # counts of a previous run would add up with ours
    return path, owned


def enable(path: str) -> None:
    """Export ``path`` to this process and every process it starts, and switch
    prometheus_client to multiprocess values if it was imported before the directory was
    known (call it before any metric is created in this process)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def live_pids() -> set[int]:
    """This process and its descendants: the only writers whose live gauges still count."""
    import psutil

    me = psutil.Process()
    pids = {me.pid}
    try:
        pids.update(c.pid for c in me.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:  # a child vanished while we looked: the next scrape sees it gone
        pass
    return pids


def forget_dead(path: str, alive: set[int]) -> list[int]:
    """Drop the live-gauge files of every pid not in ``alive``; returns the pids dropped."""
    from prometheus_client import multiprocess

    gone = set()
    for name in os.listdir(path):
        m = _LIVE_FILE.match(name)
        if m and int(m.group(1)) not in alive:
            gone.add(int(m.group(1)))
    for pid in gone:
        multiprocess.mark_process_dead(pid, path)
    return sorted(gone)


class LiveProcessCollector:
    """Sums every process's files like ``MultiProcessCollector``, after dropping the live
    gauges of processes that are gone (killed without a word, or recycled)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        try:
            gone = forget_dead(self.path, live_pids())
            if gone:
                log.info("metrics: dropped the live gauges of exited processes %s", gone)
        except OSError as exc:  # never fail a scrape over the bookkeeping
            log.warning("metrics: could not prune dead processes: %s", exc)
        yield from MultiProcessCollector(None, path=self.path).collect()


def serve(port: int, address: str, collectors: list[Any]) -> Any:
    """Serve ``/metrics`` on ``address:port`` from a background thread of this process with
    ``collectors``; returns the server (``shutdown()`` stops it), or ``None`` if the port is
    taken (logged: metrics never stop the service they describe)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        log.error("metrics endpoint not started on %s:%s: %s", address, port, exc)
        return None
    log.info("metrics on http://%s:%s/metrics", address, port)
    return server
