"""`return-notify bench --paced 50,200,500`: the pipeline loaded the way producers load it.

Backends publish one event per status change. For each rate, this publishes single
``label_created`` events (email + SMS + in-app each) with ``publish()`` at that fixed rate
for a fixed time, each stamped ``occurred_at`` = the moment it was published, into one
warm worker; then it waits until every notification is sent and reports, per rate:

* sent/s sustained while publishing, and the backlog left when publishing stopped
  (notifications not yet sent);
* p50/p95/p99 of ``occurred_at → sent`` over every notification of that rate;
* the worker's CPU per notification (every process of the worker, from the first publish
  until the last notification of the rate is sent) and its peak RSS;
* the machine's load while measuring (one-minute load average, CPU busy %).

Publisher, worker, Redis and PostgreSQL share the machine's cores, as in production on one
host. Figures are only comparable within one run (the same machine, the same minute).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import psutil
from rich.console import Console
from sqlalchemy import text

from return_notify.workers import pool_memory

__all__ = ["ProcessTreeMeter", "paced_rate", "run_paced"]


@lru_cache(maxsize=4)
def _broker(url: str) -> Any:
    """One client per broker URL for the polls (a benchmark polls every 50-100 ms)."""
    from return_notify.storage.redis import redis_client

    return redis_client(url=url)


def broker_busy(prefix: str | None = None) -> bool:
    """Whether any pipeline message is still queued or unacknowledged under ``prefix`` (one
    pipelined round trip to Redis). The benchmarks look in PostgreSQL only once the broker is
    idle, so that their own counting (a scan of every row of the run) does not take the
    cores they measure."""
    from return_notify.config.celery import ALL_QUEUES
    from return_notify.storage.redis import redis_url

    prefix = os.environ.get("RSN_REDIS_KEY_PREFIX", "") if prefix is None else prefix
    pipe = _broker(redis_url()).pipeline(transaction=False)
    for queue in ALL_QUEUES:  # kombu keeps a list per priority step: name, name\x06\x16N
        for step in (0, 3, 6, 9):
            pipe.llen(prefix + queue + (f"\x06\x16{step}" if step else ""))
    pipe.hlen(prefix + "unacked")
    return any(pipe.execute())


def settle_pool() -> None:
    """Wait until an idle worker has replaced its grown pool processes (``pool_memory``)."""
    time.sleep(pool_memory.IDLE_S + 3 * pool_memory.CHECK_EVERY_S)


class ProcessTreeMeter:
    """CPU seconds and peak RSS of a process and its children (pool processes)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self._stop = threading.Event()
        self._cpu = 0.0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *root.children(recursive=True)]

    def cpu_s(self) -> float:
        """CPU seconds used so far by the tree: the main process, its live descendants, and
        every child it has reaped (a replaced pool process), which the kernel adds to the
        main process's children counters; never less than the last reading."""
        try:
            root = psutil.Process(self.pid)
            t = root.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            for p in root.children(recursive=True):
                try:
                    c = p.cpu_times()
                except psutil.Error:  # exited since the listing: counted once reaped
                    continue
                total += c.user + c.system
        except psutil.Error:
            return self._cpu
        self._cpu = max(self._cpu, total)
        return self._cpu

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in self._tree()))
                self.cpu_s()
            except psutil.Error:
                pass
            self._stop.wait(0.25)

    def rss(self) -> int:
        try:
            return sum(p.memory_info().rss for p in self._tree())
        except psutil.Error:
            return 0

    def reset_peak(self) -> None:
        self.peak_rss = self.rss()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def _event(tag: str, i: int, tenant: str) -> dict[str, Any]:
    return {
        "event_id": f"{tag}-{i}", "tenant": tenant, "return_id": f"RMA-{tag}-{i}",
        "milestone": "label_created",
        "occurred_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "customer": {"id": f"c-{i}", "name": "Ana", "email": f"ana{i}@example.com",
                     "phone": "+14155550123", "locale": "en-US"},
        "region": "US", "product_category": "apparel",
        "data": {"label_url": f"https://labels.example.com/{tag}-{i}.pdf", "carrier": "ups"},
        "source": "bench",
    }


def _sent_count(session_scope: Any, tag: str, since: datetime) -> tuple[int, int]:
    """(events stored, notifications sent) of the rate tagged ``tag`` (published after
    ``since``: the time bound keeps the count cheap over a large history)."""
    with session_scope() as s:
        row = s.execute(text(
            "SELECT (SELECT count(*) FROM events WHERE received_at >= :s AND event_id LIKE :p), "
            "(SELECT count(*) FROM deliveries d JOIN events e ON e.id = d.event_pk "
            " WHERE d.created_at >= :s AND e.received_at >= :s AND e.event_id LIKE :p "
            " AND d.state IN ('sent', 'delivered'))"),
            {"p": tag + "-%", "s": since}).one()
    return int(row[0]), int(row[1])


def _latencies(session_scope: Any, tag: str, since: datetime) -> dict[str, float | None]:
    """occurred_at → sent percentiles, and the two hops: occurred_at → ingested (the
    event's ``received_at``, the ingest transaction's start) and ingested → sent."""
    with session_scope() as s:
        row = s.execute(text(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY x), max(x), "
            "percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY i), "
            "percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY y) "
            "FROM (SELECT extract(epoch FROM d.sent_at - d.occurred_at) AS x, "
            "extract(epoch FROM e.received_at - d.occurred_at) AS i, "
            "extract(epoch FROM d.sent_at - e.received_at) AS y "
            "FROM deliveries d JOIN events e ON e.id = d.event_pk "
            "WHERE d.created_at >= :s AND e.received_at >= :s AND e.event_id LIKE :p "
            "AND d.sent_at IS NOT NULL) q"), {"p": tag + "-%", "s": since}).one()

    def ms(v: Any) -> float | None:
        return round(float(v) * 1000, 1) if v is not None else None

    pct, ing, dlv = (row[0] or [None] * 3), (row[2] or [None] * 2), (row[3] or [None] * 2)
    return {"p50_ms": ms(pct[0]), "p95_ms": ms(pct[1]), "p99_ms": ms(pct[2]),
            "max_ms": ms(row[1]), "to_ingested_p50_ms": ms(ing[0]),
            "to_ingested_p99_ms": ms(ing[1]), "ingested_to_sent_p50_ms": ms(dlv[0]),
            "ingested_to_sent_p99_ms": ms(dlv[1])}


def paced_rate(rate: float, duration_s: float, meter: ProcessTreeMeter, session_scope: Any,
               tenant: str, console: Console, drain_timeout_s: float = 180.0) -> dict[str, Any]:
    """Publish single events at ``rate``/s for ``duration_s``, then wait for every
    notification; the figures of one rate."""
    from return_notify.producer import publish

    tag = f"p{int(rate)}-{uuid.uuid4().hex[:6]}"
    since = datetime.now(UTC) - timedelta(seconds=1)
    n = int(rate * duration_s)
    expected = 3 * n
    meter.reset_peak()
    psutil.cpu_percent(None)  # start the machine's busy-% window
    load_before = os.getloadavg()[0]
    cpu0 = meter.cpu_s()
    t0 = time.monotonic()
    late = 0
    for i in range(n):
        due = t0 + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        elif wait < -0.05:
            late += 1
        publish(_event(tag, i, tenant))
    published_s = time.monotonic() - t0
    stored_at_stop, sent_at_stop = _sent_count(session_scope, tag, since)
    busy = psutil.cpu_percent(None)
    deadline = time.monotonic() + drain_timeout_s
    sent = sent_at_stop
    while sent < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        if not broker_busy():
            _, sent = _sent_count(session_scope, tag, since)
    done_s = time.monotonic() - t0
    cpu = meter.cpu_s() - cpu0
    lat = _latencies(session_scope, tag, since)
    out = {
        "rate_events_per_s": rate, "events": n, "notifications": expected,
        "publish_s": round(published_s, 2),
        "publisher_behind": late,  # publishes that went out > 50 ms after their slot
        "sent_per_s_while_publishing": round(sent_at_stop / published_s, 1),
        "backlog_at_stop": expected - sent_at_stop,
        "events_not_ingested_at_stop": n - stored_at_stop,
        "all_sent": sent >= expected, "sent": sent,
        "drain_after_stop_s": round(done_s - published_s, 2),
        **lat,
        "worker_cpu_ms_per_notification": round(cpu * 1000 / max(1, sent), 3),
        "worker_cpu_cores_busy": round(cpu / done_s, 2),
        "peak_worker_rss_mib": round(meter.peak_rss / 2**20, 1),
        "machine_busy_pct_while_publishing": round(busy, 1),
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    console.print(
        f"{rate:>6.0f} events/s: sent {out['sent_per_s_while_publishing']:,}/s while publishing, "
        f"backlog {out['backlog_at_stop']:,} at stop, p50/p99 {lat['p50_ms']}/{lat['p99_ms']} ms, "
        f"{out['worker_cpu_ms_per_notification']} ms worker CPU per notification")
    return out


def run_paced(rates: list[float], duration_s: float = 30.0, workers: int = 2,
              console: Console | None = None, env_extra: dict[str, str] | None = None,
              history: int = 0) -> dict[str, Any]:
    """The paced benchmark on fresh services (embedded unless configured); returns the
    figures (``rates``: one entry per rate, in the order given). ``history``: the rates run
    first on the empty database (``rates_at_zero_rows``), then about that many deliveries
    of history are added (``history_bench``) and the rates run again (``rates``)."""
    from return_notify.config.settings import reset_settings
    from return_notify.devtools.endpoints import scratch_database, scratch_keys, servers
    from return_notify.devtools.processes import start_worker

    console = console or Console(stderr=True)
    prefix = f"rsn-paced-{uuid.uuid4().hex[:8]}:"
    os.environ["RSN_REDIS_KEY_PREFIX"] = prefix
    reset_settings()
    result: dict[str, Any] = {"worker_processes": workers, "duration_s": duration_s,
                              "cpus": psutil.cpu_count(), "history_rows": history, "rates": []}
    with servers() as served, scratch_database(served, "paced") as ep, \
            scratch_keys(ep, prefix):
        from return_notify.storage.db import dispose_engine, session_scope
        from return_notify.storage.migrate import upgrade

        dispose_engine()
        upgrade()
        env = ep.env(RSN_REDIS_KEY_PREFIX=prefix, RSN_SANDBOX_TRANSIENT_FAILURE_RATE="0",
                     RSN_QUIET_HOURS_ENABLED="false", RSN_THROTTLE_MIN_INTERVALS="",
                     RSN_SANDBOX_LATENCY_MS="0", **(env_extra or {}))
        import tempfile

        worker = start_worker(env, concurrency=workers, name="paced",
                              logdir=tempfile.mkdtemp(prefix="rsn-paced-"), loglevel="WARNING")
        meter = ProcessTreeMeter(worker.popen.pid)
        tenant = "bench-paced"
        try:
            warm = paced_rate(20, 2, meter, session_scope, tenant, Console(quiet=True))
            result["rss_after_warm_mib"] = round(meter.rss() / 2**20, 1)
            result["warm_all_sent"] = warm["all_sent"]
            if history:  # the same rates on the empty database first, then on the history
                from return_notify.devtools.history_bench import fill_history, settle
                from return_notify.storage.db import get_engine

                settle(get_engine())  # analysed and checkpointed, as before the second run
                result["rates_at_zero_rows"] = [
                    paced_rate(rate, duration_s, meter, session_scope, tenant, console)
                    for rate in rates]
                result["history"] = fill_history(history, console)
            for rate in rates:
                result["rates"].append(paced_rate(rate, duration_s, meter, session_scope,
                                                  tenant, console))
            settle_pool()  # once idle, grown pool processes are replaced
            result["rss_at_end_mib"] = round(meter.rss() / 2**20, 1)
        finally:
            meter.stop()
            worker.stop(30)
            dispose_engine()
    return result
