"""`return-notify bench`: end-to-end throughput against the bare-Celery ceiling, same run.

Both measurements use the same broker and the same number of pool processes. The ceiling
is the rate at which a **warm** worker drains pre-published no-op tasks (one message each):
the worker starts, works off a warm-up batch, and only then is told to consume the queue
holding the measured tasks (``add_consumer``), so start-up and warm-up are not in the
figure. It is measured twice: with Celery's own default configuration (a bare app,
``devtools/bare_celery.py``) and with the project's (``return-notify worker``: acks late,
prefetch 1, task events as ``RSN_TASK_EVENTS`` says). The pipeline takes a realistic event
stream, published in bulk (200 events a message), from publish to every delivery sent.
``--paced`` measures single publishes at steady rates instead (``bench_paced.py``).
``--history N`` first fills the run's database with about N historical deliveries over
13 months (``devtools.history``), rolls the KPI aggregates up and times the reads that
grow with history (``history_reads``), then runs the throughput measurement on top.

Every run gets a database of its own (embedded servers, or a scratch database created on
the configured server and dropped afterwards: ``endpoints.scratch_database``), so neither
the throughput runs nor the history ever touch the configured database's rows.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from return_notify.devtools.bench_paced import broker_busy, settle_pool


class _PeakRSS:
    """Samples the summed RSS of a process tree until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid))
            self._stop.wait(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._t.join(2)
        return self.peak


def _plain(v: Any) -> Any:
    """JSON for what SQL aggregates return (``Decimal``) and anything else printable."""
    from decimal import Decimal

    return float(v) if isinstance(v, Decimal) else str(v)


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def _drained(redis_url: str, prefix: str, queue: str, timeout_s: float) -> float:
    """Seconds until ``queue`` and the unacked hash are empty (polled every 20 ms)."""
    from return_notify.storage.redis import redis_client

    r = redis_client(url=redis_url)
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s:
            if r.llen(prefix + queue) == 0 and r.hlen(prefix + "unacked") == 0:
                return time.monotonic() - t0
            time.sleep(0.02)
    finally:
        r.close()
    raise TimeoutError(f"{queue} not drained in {timeout_s}s")


def run_bench(n_events: int = 20_000, workers: int = 2, n_noop: int = 20_000,
              json_out: bool = False, timeout_s: float = 600.0, history: int = 0) -> int:
    from return_notify.config.settings import reset_settings
    from return_notify.devtools.endpoints import scratch_database, scratch_keys, servers

    console = Console(stderr=True)
    tag = uuid.uuid4().hex[:8]
    prefix = f"rsn-bench-{tag}:"
    import os
    os.environ["RSN_REDIS_KEY_PREFIX"] = prefix
    reset_settings()
    result: dict[str, Any] = {"events": n_events, "worker_processes": workers, "noop_tasks": n_noop,
                              "history_rows": history}
    # an empty database per run; the run's Redis keys go with it
    with servers() as served, scratch_database(served) as ep, scratch_keys(ep, prefix):
        from return_notify.storage.db import dispose_engine
        from return_notify.storage.migrate import upgrade

        dispose_engine()
        upgrade()
        env = ep.env(RSN_REDIS_KEY_PREFIX=prefix, RSN_SANDBOX_TRANSIENT_FAILURE_RATE="0",
                     RSN_QUIET_HOURS_ENABLED="false", RSN_THROTTLE_MIN_INTERVALS="",
                     RSN_SANDBOX_LATENCY_MS="0")
        logdir = tempfile.mkdtemp(prefix="rsn-bench-")

        # 1. bare-Celery ceiling on a warm worker: Celery's default configuration, then the
        #    project's (task events on, for Flower, and off)
        result["ceiling_celery_default_tasks_per_s"] = _ceiling(
            ep, env, prefix, n_noop, workers, logdir, "celery-default", timeout_s, console)
        result["ceiling_tasks_per_s"] = _ceiling(
            ep, env, prefix, n_noop, workers, logdir, "events-on", timeout_s, console)
        result["ceiling_no_events_tasks_per_s"] = _ceiling(
            ep, env, prefix, n_noop, workers, logdir, "events-off", timeout_s, console)
        result["ceiling_best_tasks_per_s"] = max(result["ceiling_tasks_per_s"],
                                                 result["ceiling_no_events_tasks_per_s"],
                                                 result["ceiling_celery_default_tasks_per_s"])

        # 2. the pipeline, publish → every delivery sent; with --history, first on the
        #    empty database, then again on top of the history (same run, same worker setup)
        if history:
            from return_notify.devtools.history_bench import fill_history, settle
            from return_notify.storage.db import get_engine

            settle(get_engine())  # analysed and checkpointed, as before the second run
            console.print("the pipeline on the empty database first …")
            zero = _pipeline_run(ep, env, f"z{tag}-", n_events, workers, logdir, timeout_s,
                                 console, result)
            result["at_zero_rows"] = {k: zero[k] for k in _COMPARED}
            result["history"] = fill_history(history, console)
        result.update(_pipeline_run(ep, env, f"b{tag}-", n_events, workers, logdir, timeout_s,
                                    console, result))
        if history:
            result["change_vs_zero_rows_pct"] = {
                k: _pct(result[k], result["at_zero_rows"][k]) for k in _COMPARED}
        dispose_engine()
    _report(result, json_out, console)
    return 0


#: the figures compared between the empty database and the history (--history)
_COMPARED = ("events_per_s", "notifications_per_s", "p99_ms")


def _pct(now: float | None, before: float | None) -> float | None:
    if now is None or not before:
        return None
    return round((now - before) * 100 / before, 1)


def _pipeline_run(ep: Any, env: dict[str, str], tag: str, n_events: int, workers: int,
                  logdir: str, timeout_s: float, console: Console,
                  ceilings: dict[str, Any]) -> dict[str, Any]:
    """Publish ``n_events`` (200 per message) into a warm worker and wait for every
    delivery: events/s, notifications/s, latencies, the worker's memory."""
    from return_notify.config.settings import get_settings
    from return_notify.devtools.processes import start_worker
    from return_notify.devtools.sample_data import make_stream, stamp
    from return_notify.producer import publish_raw_batches
    from return_notify.reporting.throughput import pipeline_stats
    from return_notify.storage.db import session_scope

    stream = make_stream(n_events=n_events, min_returns=max(50, n_events // 9), seed=11,
                         dup_rate=0.0, ooo_rate=0.0, invalid=0, prefix=tag)
    w = start_worker(env, concurrency=workers, logdir=logdir, name="bench-pipeline",
                     loglevel="WARNING")
    rss = _PeakRSS(w.popen.pid)
    try:
        # warm-up: 400 events of another tag through the pool, so that "before" is a
        # warm worker (connections open, statements compiled) as in production
        warm = make_stream(n_events=400, min_returns=50, seed=3, dup_rate=0.0, ooo_rate=0.0,
                           invalid=0, prefix="w" + tag)
        warm_since = datetime.now(UTC)
        publish_raw_batches([stamp(warm.events)])
        _wait_pipeline(session_scope, warm_since, "w" + tag, len(warm.events),
                       time.monotonic(), timeout_s, console)
        rss_before = _tree_rss(w.popen.pid)
        since = datetime.now(UTC)
        events = stamp(stream.events)
        size = get_settings().ingest_batch_size
        t0 = time.monotonic()
        publish_raw_batches([events[i : i + size] for i in range(0, len(events), size)])
        done_s = _wait_pipeline(session_scope, since, tag, len(events), t0, timeout_s,
                                console)
        settle_pool()  # the backlog is worked off: grown pool processes are replaced
        rss_after = _tree_rss(w.popen.pid)
    finally:
        peak = rss.stop()
        w.stop(20)
    with session_scope() as s:
        st = pipeline_stats(s, since=since)
    n_notif = st["deliveries"]["sent"]
    return {
        "events_published": len(events), "notifications_sent": n_notif,
        "elapsed_s": round(done_s, 2),
        "events_per_s": round(len(events) / done_s, 1),
        "notifications_per_s": round(n_notif / done_s, 1),
        "latency_s": st["latency_s"], "peak_worker_rss_mib": round(peak / 2**20, 1),
        "worker_rss_before_mib": round(rss_before / 2**20, 1),
        "worker_rss_after_mib": round(rss_after / 2**20, 1),
        "worker_rss_growth_pct": round((rss_after - rss_before) * 100 / max(1, rss_before), 1),
        "ratio_to_ceiling": round(n_notif / done_s / ceilings["ceiling_tasks_per_s"], 3),
        "ratio_to_celery_default": round(
            n_notif / done_s / ceilings["ceiling_celery_default_tasks_per_s"], 3),
        "ratio_to_best_ceiling": round(n_notif / done_s / ceilings["ceiling_best_tasks_per_s"], 3),
        "broker": ep.broker_url.split("@")[-1], "embedded": ep.embedded,
        "p99_ms": round(st["latency_s"]["occurred_to_sent_p99"] * 1000, 1)
        if st["latency_s"].get("occurred_to_sent_p99") is not None else None,
    }


def _ceiling(ep: Any, env: dict[str, str], prefix: str, n: int, workers: int, logdir: str,
             mode: str, timeout_s: float, console: Console) -> float:
    """No-op tasks/s drained by a warm worker (``mode``: celery-default, events-on,
    events-off); start-up and warm-up are excluded (see the module docstring)."""
    import subprocess
    import sys

    from celery import Celery

    from return_notify.config.celery import NOOP_TASK, celery_config
    from return_notify.config.settings import Settings
    from return_notify.devtools.processes import Proc, start_worker, stop_process, wait_for_log

    # the worker command accepts only the project's queues: warm up on one, measure on another
    queue, warm = "events", "maintenance"
    settings = Settings(broker_url=ep.broker_url, redis_key_prefix=prefix,
                        task_events=mode == "events-on")
    capp = Celery("bench", set_as_current=False)
    capp.conf.update(celery_config(settings))
    if mode == "celery-default":
        capp = Celery("bench-bare", broker=ep.broker_url, set_as_current=False)
        capp.conf.broker_transport_options = {"global_keyprefix": prefix}
        log = open(f"{logdir}/bench-noop-default.log", "ab")  # noqa: SIM115 - the worker's
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "return_notify.devtools.bare_celery", "worker",
             "-c", str(workers), "-l", "INFO", "-Q", warm,
             "-n", f"bench-default-{uuid.uuid4().hex[:6]}@%h"],
            env={**env, "RSN_REDIS_KEY_PREFIX": prefix}, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        from pathlib import Path

        w = Proc("bench-noop-default", popen, Path(f"{logdir}/bench-noop-default.log"))
        wait_for_log(w, "ready.", 60.0)
    else:
        w = start_worker({**env, "RSN_TASK_EVENTS": "true" if mode == "events-on" else "false"},
                         queues=warm, concurrency=workers, logdir=logdir,
                         name=f"bench-noop-{mode}", loglevel="WARNING")
    try:
        with capp.producer_or_acquire() as prod:  # warm-up: 500 tasks through the pool
            for _ in range(500):
                capp.send_task(NOOP_TASK, queue=warm, routing_key=warm, producer=prod)
        _drained(ep.broker_url, prefix, warm, timeout_s)
        console.print(f"publishing {n:,} no-op tasks ({mode}) …")
        with capp.producer_or_acquire() as prod:
            for _ in range(n):
                capp.send_task(NOOP_TASK, queue=queue, routing_key=queue, producer=prod)
        t0 = time.monotonic()  # from the moment the warm worker is told to consume
        capp.control.add_consumer(queue, reply=True, timeout=10.0, limit=1)
        _drained(ep.broker_url, prefix, queue, timeout_s)
        elapsed = time.monotonic() - t0
    finally:
        if mode == "celery-default":
            stop_process(w.popen, 20)
        else:
            w.stop(20)
    rate = round(n / elapsed, 1)
    console.print(f"bare Celery, warm worker, {mode}: {rate:,} tasks/s")
    return rate


def _wait_pipeline(session_scope: Any, since: datetime, tag: str, n: int, t0: float,
                   timeout_s: float, console: Console) -> float:
    while time.monotonic() - t0 < timeout_s:
        if broker_busy():
            time.sleep(0.05)  # the broker still holds work: no scan of the run's rows yet
            continue
        with session_scope() as s:
            row = s.execute(text(
                "SELECT (SELECT count(*) FROM events WHERE received_at >= :s AND event_id LIKE :p),"
                " count(*) FILTER (WHERE state IN ('pending','sending','retrying','scheduled')),"
                " max(sent_at) FROM deliveries WHERE created_at >= :s"),
                {"s": since, "p": tag + "%"}).one()
        if row[0] >= n and row[1] == 0:
            last = row[2]
            return (last - since).total_seconds() if last else time.monotonic() - t0
        time.sleep(0.2)
    raise TimeoutError(f"pipeline did not finish in {timeout_s}s")


def _history_table(h: dict[str, Any]) -> None:
    g, reads = h["generated"], h["reads"]
    t = Table("read (median)", "seconds", title=(
        f"with {g['deliveries']:,} deliveries of history ({g['events']:,} events; generated in "
        f"{g['seconds']:,.0f} s, rolled up in {h['rollup']['seconds']:,.0f} s, vacuumed and "
        f"checkpointed in {h.get('settle_s', 0):,.0f} s)"))
    for k, v in reads.items():
        if k.endswith("_s"):
            t.add_row(k[:-2].replace("_", " "), f"{v:,.3f}")
    Console().print(t)


def _report(r: dict[str, Any], json_out: bool, console: Console) -> None:
    if json_out:
        sys.stdout.write(json.dumps(r, indent=2, default=_plain) + "\n")
        return
    t = Table("measure", "value", title="return-notify bench")
    lat = r["latency_s"]
    for k, v in (
        ("events published", f"{r['events_published']:,}"),
        ("notifications sent", f"{r['notifications_sent']:,}"),
        ("elapsed (publish → last sent)", f"{r['elapsed_s']} s"),
        ("events/s", f"{r['events_per_s']:,}"),
        ("notifications/s", f"{r['notifications_per_s']:,}"),
        ("occurred_at → sent p50 / p95 / p99",
         " / ".join(f"{(lat[k] or 0) * 1000:,.0f} ms" for k in
                    ("occurred_to_sent_p50", "occurred_to_sent_p95", "occurred_to_sent_p99"))),
        ("peak worker RSS (all pool processes)", f"{r['peak_worker_rss_mib']} MiB"),
        ("worker RSS before → after the backlog",
         f"{r['worker_rss_before_mib']} → {r['worker_rss_after_mib']} MiB "
         f"({r['worker_rss_growth_pct']:+} %)"),
        ("bare Celery, warm, Celery's defaults (no-op tasks/s)",
         f"{r['ceiling_celery_default_tasks_per_s']:,}"),
        ("bare Celery, warm, project config (no-op tasks/s)", f"{r['ceiling_tasks_per_s']:,}"),
        ("bare Celery, warm, project config, task events off",
         f"{r['ceiling_no_events_tasks_per_s']:,}"),
        ("notifications/s ÷ Celery's defaults ceiling", f"{r['ratio_to_celery_default']}"),
        ("notifications/s ÷ ceiling (same config)", f"{r['ratio_to_ceiling']}"),
        ("notifications/s ÷ best ceiling", f"{r['ratio_to_best_ceiling']}"),
        ("worker pool processes", str(r["worker_processes"])),
    ):
        t.add_row(k, v)
    Console().print(t)
    if "history" in r:
        _history_table(r["history"])
        z, ch = r["at_zero_rows"], r["change_vs_zero_rows_pct"]
        h = Table("measure", "empty database", f"{r['history_rows']:,} rows of history",
                  "change", title="the same pipeline run, before and after the history")
        for k, label in (("events_per_s", "events/s"), ("notifications_per_s", "notifications/s"),
                         ("p99_ms", "occurred_at → sent p99 (ms)")):
            h.add_row(label, f"{z[k]:,}", f"{r[k]:,}", f"{ch[k]:+} %" if ch[k] is not None else "–")
        Console().print(h)


def run_paced_bench(rates: list[float], duration_s: float = 30.0, workers: int = 2,
                    json_out: bool = False, history: int = 0) -> int:
    """``bench --paced``: single publishes at each steady rate (``bench_paced.py``)."""
    from return_notify.devtools.bench_paced import run_paced

    console = Console(stderr=True)
    result = run_paced(rates, duration_s=duration_s, workers=workers, console=console,
                       history=history)
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2, default=_plain) + "\n")
        return 0 if all(r["all_sent"] for r in result["rates"]) else 1
    t = Table("events/s", "sent/s while publishing", "backlog at stop", "p50", "p95", "p99",
              "worker CPU / notification", "machine busy", title=(
                  f"return-notify bench --paced ({duration_s:.0f} s per rate, "
                  f"{workers} worker processes, {result['cpus']} CPUs)"))
    for r in result["rates"]:
        t.add_row(f"{r['rate_events_per_s']:,.0f}", f"{r['sent_per_s_while_publishing']:,}",
                  f"{r['backlog_at_stop']:,}", *(f"{r[k]:,} ms" for k in ("p50_ms", "p95_ms", "p99_ms")),
                  f"{r['worker_cpu_ms_per_notification']} ms",
                  f"{r['machine_busy_pct_while_publishing']} %")
    Console().print(t)
    Console().print(f"worker RSS after warm-up {result['rss_after_warm_mib']} MiB, at the end "
                    f"{result['rss_at_end_mib']} MiB")
    if "history" in result:
        _history_table(result["history"])
        h = Table("events/s", "p99, empty database", f"p99, {history:,} rows of history",
                  "sent/s, empty", "sent/s, history",
                  title="the same rates, before and after the history")
        for z, r in zip(result["rates_at_zero_rows"], result["rates"], strict=True):
            h.add_row(f"{r['rate_events_per_s']:,.0f}", f"{z['p99_ms']:,} ms", f"{r['p99_ms']:,} ms",
                      f"{z['sent_per_s_while_publishing']:,}",
                      f"{r['sent_per_s_while_publishing']:,}")
        Console().print(h)
    return 0 if all(r["all_sent"] for r in result["rates"]) else 1


def run_scaling_bench(concurrency: list[int], latency_ms: float = 200.0, workers: int = 2,
                      pool: str = "prefork", n_events: int | None = None,
                      json_out: bool = False) -> int:
    """``bench --providers local``: the notifications/s curve against delivery concurrency,
    through the real SDKs and local provider servers answering after ``latency_ms``
    (implementation in ``bench_scaling``)."""
    from return_notify.devtools.bench_scaling import run_scaling

    return run_scaling(concurrency, latency_ms=latency_ms, workers=workers, pool=pool,
                       n_events=n_events, json_out=json_out)
