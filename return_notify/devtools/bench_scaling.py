"""`return-notify bench --providers local`: notifications/s against delivery concurrency.

The real provider SDKs (SendGrid, Twilio) talk to the local provider servers, started as
processes that answer every call after ``--latency-ms``. For each concurrency level, in a
fresh key prefix: a worker on ``events`` ingests the stream (deliver messages wait in the
channel queues), then a worker on ``email,sms,inapp`` with ``RSN_PROVIDER_CONCURRENCY`` =
the level drains them; notifications/s = notifications sent ÷ (last ``sent_at`` − the
delivery worker's ready time). CPU of the worker's processes, of the provider servers and
of the whole machine is sampled over the same window, to say what limits the curve.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

#: still being worked on; ``scheduled`` (held for the recipient's quiet hours) is settled
_ACTIVE = "('pending', 'sending', 'retrying')"


@dataclass
class Level:
    concurrency: int
    in_flight_max: int  # provider calls at once, per provider
    events: int
    notifications: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)
    not_sent: int = 0  # skipped, suppressed, failed, or scheduled for after quiet hours
    elapsed_s: float = 0.0
    notifications_per_s: float = 0.0
    provider_notifications_per_s: float = 0.0
    bound_provider_per_s: float = 0.0
    worker_cpu_cores: float = 0.0
    cpu_ms_per_notification: float = 0.0
    provider_servers_cpu_cores: float = 0.0
    postgres_cpu_cores: float = 0.0
    redis_cpu_cores: float = 0.0
    other_cpu_cores: float = 0.0
    machine_cpu_busy_pct: float = 0.0
    load_avg_1m_before: float = 0.0
    #: the biggest other CPU users in the window (name: cores), e.g. other people's jobs
    other_top: dict[str, float] = field(default_factory=dict)


def _start_fake(module: str, latency_ms: float, logdir: str) -> tuple[subprocess.Popen[bytes], str]:
    log = open(os.path.join(logdir, module.rsplit(".", 1)[-1] + ".log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", "0", "--latency-ms",
                             str(latency_ms)], stdout=subprocess.PIPE, stderr=log,
                            start_new_session=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().decode().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"{module} did not start (see {log.name})")
    return proc, url


def _tree(pids: list[int]) -> set[int]:
    out: set[int] = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            out |= {root.pid, *(c.pid for c in root.children(recursive=True))}
        except psutil.Error:
            pass
    return out


def _snapshot() -> tuple[dict[int, tuple[str, float]], float]:
    """CPU seconds of every process (by pid, with its name) and of the whole machine."""
    procs = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is not None:
            procs[p.pid] = (p.info["name"] or "", t.user + t.system)
    m = psutil.cpu_times()
    return procs, sum(m) - m.idle - getattr(m, "iowait", 0.0)


def _attribute(lvl: Level, before: Any, after: Any, worker: set[int], fakes: set[int],
               wall: float) -> None:
    """Split the window's CPU between the worker, the provider servers, PostgreSQL, Redis
    and everything else on the machine (other sessions' load shows up there)."""
    groups = {"worker": 0.0, "fakes": 0.0, "postgres": 0.0, "redis": 0.0}
    others: dict[str, float] = {}
    for pid, (name, cpu) in after[0].items():
        used = cpu - before[0].get(pid, (name, 0.0))[1]
        key = ("worker" if pid in worker else "fakes" if pid in fakes
               else "postgres" if name.startswith("postgres") else "redis"
               if name.startswith("redis") else None)
        if key:
            groups[key] += used
        else:
            label = "(this bench)" if pid == os.getpid() else name
            others[label] = others.get(label, 0.0) + used
    lvl.other_top = {n: round(v / wall, 2) for n, v in
                     sorted(others.items(), key=lambda kv: -kv[1])[:4] if v / wall >= 0.01}
    busy = after[1] - before[1]
    lvl.worker_cpu_cores = round(groups["worker"] / wall, 2)
    lvl.cpu_ms_per_notification = round(groups["worker"] * 1000 / max(1, lvl.notifications), 2)
    lvl.provider_servers_cpu_cores = round(groups["fakes"] / wall, 2)
    lvl.postgres_cpu_cores = round(groups["postgres"] / wall, 2)
    lvl.redis_cpu_cores = round(groups["redis"] / wall, 2)
    lvl.other_cpu_cores = round(max(0.0, busy - sum(groups.values())) / wall, 2)
    lvl.machine_cpu_busy_pct = round(100 * busy / (wall * (psutil.cpu_count() or 1)), 1)


def _queues_empty(r: Any, prefix: str, queue: str) -> bool:
    from return_notify.observability.metrics import queue_keys

    return sum(r.llen(k) for k in queue_keys(prefix, queue)) == 0 and r.hlen(prefix + "unacked") == 0


def _forget_prefix(r: Any, prefix: str) -> None:
    keys = list(r.scan_iter(match=prefix + "*", count=1000))
    if keys:
        r.delete(*keys)


def _events_per_level(concurrency: int, workers: int, latency_s: float) -> int:
    bound = workers * concurrency / latency_s  # provider calls/s if nothing else limited
    return int(min(9000, max(600, bound * 9 / 0.9)))  # ~9 s at the bound, ~0.9 calls/event


def run_scaling(concurrency: list[int], latency_ms: float = 200.0, workers: int = 2,
                pool: str = "prefork", n_events: int | None = None, json_out: bool = False,
                timeout_s: float = 600.0) -> int:
    """Run every level and print the curve (a table, or JSON)."""
    # SIGTERM unwinds like Ctrl-C, so the workers and provider servers are stopped too
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) if main else None
    try:
        levels = _run_levels(concurrency, latency_ms, workers, pool, n_events, timeout_s)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    result = {"latency_ms": latency_ms, "worker_processes": workers, "pool": pool,
              "cpus": psutil.cpu_count(), "levels": [asdict(x) for x in levels]}
    _report(result, json_out)
    return 0


def _run_levels(concurrency: list[int], latency_ms: float, workers: int, pool: str,
                n_events: int | None, timeout_s: float) -> list[Level]:
    import redis

    from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY
    from return_notify.channels.fakes.twilio_server import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN
    from return_notify.config.settings import Settings, get_settings
    from return_notify.devtools.endpoints import scratch_database, servers
    from return_notify.devtools.processes import start_worker, stop_process
    from return_notify.devtools.sample_data import make_stream, stamp
    from return_notify.producer import publish_raw_batches

    console = Console(stderr=True)
    tag = uuid.uuid4().hex[:8]
    logdir = tempfile.mkdtemp(prefix="rsn-scale-")
    levels: list[Level] = []
    with servers() as served, scratch_database(served) as ep:  # an empty database per run
        from return_notify.storage.db import dispose_engine, session_scope
        from return_notify.storage.migrate import upgrade

        dispose_engine()
        upgrade()
        fakes = [_start_fake("return_notify.channels.fakes.sendgrid_server", latency_ms, logdir),
                 _start_fake("return_notify.channels.fakes.twilio_server", latency_ms, logdir)]
        r = redis.Redis.from_url(ep.broker_url)
        try:
            base_env = ep.env(
                RSN_EMAIL_PROVIDER="sendgrid", RSN_SENDGRID_API_KEY=FAKE_API_KEY,
                RSN_SENDGRID_BASE_URL=fakes[0][1], RSN_SMS_PROVIDER="twilio",
                RSN_TWILIO_ACCOUNT_SID=FAKE_ACCOUNT_SID, RSN_TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN,
                RSN_TWILIO_FROM="+15005550006", RSN_TWILIO_BASE_URL=fakes[1][1],
                RSN_EMAIL_PROVIDERS="", RSN_RATE_LIMITS="",
                RSN_PROVIDER_TIMEOUT_S="30")
            for c in concurrency:
                prefix = f"rsn-scale-{tag}-{c}:"
                env = {**base_env, "RSN_REDIS_KEY_PREFIX": prefix,
                       "RSN_PROVIDER_CONCURRENCY": str(c)}
                n = n_events or _events_per_level(c, workers, latency_ms / 1000)
                stream = make_stream(n_events=n, min_returns=max(50, n // 9), seed=c,
                                     dup_rate=0.0, ooo_rate=0.0, invalid=0, prefix=f"s{tag}{c}-")
                events = stamp(stream.events)
                size = get_settings().ingest_batch_size
                with session_scope() as s:
                    since: datetime = s.execute(text("SELECT now()")).scalar_one()
                # 1. ingest: the deliver messages pile up in the channel queues
                w = start_worker(env, queues="events", concurrency=workers, logdir=logdir,
                                 name=f"scale-ingest-{c}", loglevel="WARNING")
                try:
                    publish_raw_batches([events[i:i + size] for i in range(0, len(events), size)],
                                        settings=Settings(broker_url=ep.broker_url,
                                                          redis_key_prefix=prefix))
                    _wait(lambda p=prefix: _queues_empty(r, p, "events"), timeout_s, "ingest")
                finally:
                    w.stop(20)
                # 2. deliver at this concurrency
                # a pool process sends through one thread pool of c per channel: prefork has
                # `workers` of them, a threads/gevent pool one (its batches share the pool)
                flight = c * (workers if pool == "prefork" else 1)
                lvl = Level(c, flight, len(events),
                            bound_provider_per_s=round(flight / (latency_ms / 1000), 1))
                console.print(f"concurrency {c}: delivering the notifications of "
                              f"{len(events):,} events …")
                lvl.load_avg_1m_before = round(os.getloadavg()[0], 2)
                w = start_worker(env, queues="email,sms,inapp", concurrency=workers, pool=pool,
                                 logdir=logdir, name=f"scale-deliver-{c}", loglevel="WARNING")
                try:
                    with session_scope() as s:
                        ready: datetime = s.execute(text("SELECT now()")).scalar_one()
                    t0, before = time.monotonic(), _snapshot()
                    _wait(lambda s0=since: _active(session_scope, s0) == 0, timeout_s, "delivery")
                    after, wall = _snapshot(), time.monotonic() - t0
                    worker_pids = _tree([w.popen.pid])
                finally:
                    w.stop(20)
                _forget_prefix(r, prefix)
                _measure(lvl, session_scope, since, ready)
                if not lvl.notifications:
                    raise RuntimeError(f"concurrency {c}: no notification was sent; the worker "
                                       f"logs are in {logdir}")
                _attribute(lvl, before, after, worker_pids, _tree([f[0].pid for f in fakes]), wall)
                levels.append(lvl)
                console.print(f"  {lvl.notifications_per_s:,} notifications/s "
                              f"({lvl.provider_notifications_per_s:,} via providers), "
                              f"machine CPU {lvl.machine_cpu_busy_pct} % busy")
        finally:
            for proc, _ in fakes:
                stop_process(proc, 5)
            r.close()
            dispose_engine()
    return levels


def _wait(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not finish in {timeout_s:.0f}s")


def _active(session_scope: Any, since: datetime) -> int:
    with session_scope() as s:
        return int(s.execute(text(f"SELECT count(*) FROM deliveries WHERE created_at >= :s "
                                  f"AND state IN {_ACTIVE}"), {"s": since}).scalar_one())


def _measure(lvl: Level, session_scope: Any, since: datetime, ready: datetime) -> None:
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT channel, count(*) FILTER (WHERE sent_at IS NOT NULL), count(*) FILTER "
            "(WHERE sent_at IS NULL), max(sent_at) FROM deliveries WHERE created_at >= :s "
            "GROUP BY 1"), {"s": since}).all()
    lvl.by_channel = {ch: int(n) for ch, n, _, _ in rows}
    lvl.not_sent = sum(int(x) for _, _, x, _ in rows)
    lvl.notifications = sum(lvl.by_channel.values())
    last = max((m for *_, m in rows if m is not None), default=ready)
    lvl.elapsed_s = max(round((last - ready).total_seconds(), 2), 0.01)
    lvl.notifications_per_s = round(lvl.notifications / lvl.elapsed_s, 1)
    provider = lvl.by_channel.get("email", 0) + lvl.by_channel.get("sms", 0)
    lvl.provider_notifications_per_s = round(provider / lvl.elapsed_s, 1)


def _report(result: dict[str, Any], json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    t = Table("c per\nprocess", "in flight\nper provider", "notifi-\ncations", "elapsed",
              "notifi-\ncations/s", "via\nproviders/s", "bound/s per\nprovider", "CPU cores:\nworker",
              "provider\nservers", "Postgre-\nSQL", "Redis", "other", "machine\nbusy",
              title=f"return-notify bench --providers local: {result['latency_ms']:.0f} ms "
                    f"provider latency, {result['worker_processes']} {result['pool']} processes, "
                    f"{result['cpus']} CPUs")
    for lv in result["levels"]:
        t.add_row(str(lv["concurrency"]), str(lv["in_flight_max"]), f"{lv['notifications']:,}",
                  f"{lv['elapsed_s']} s", f"{lv['notifications_per_s']:,}",
                  f"{lv['provider_notifications_per_s']:,}", f"{lv['bound_provider_per_s']:,}",
                  str(lv["worker_cpu_cores"]), str(lv["provider_servers_cpu_cores"]),
                  str(lv["postgres_cpu_cores"]), str(lv["redis_cpu_cores"]),
                  str(lv["other_cpu_cores"]), f"{lv['machine_cpu_busy_pct']} %")
    Console().print(t)
