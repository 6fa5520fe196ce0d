"""Chaos harness: faults under load (worker kills, Redis/PostgreSQL restarts, provider faults),
then an exact account of every event, delivery and provider-accepted send (``chaos_report``).

Each scenario gets a fresh database and Redis key prefix on embedded Redis (AOF) and
PostgreSQL that the harness may restart (never a machine's shared servers), fresh local
Twilio/SendGrid servers and real ``return-notify worker``/``beat`` processes:

    python -m return_notify.devtools.chaos --scenario all --events 5000 --json
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from return_notify.channels.fakes import Fault, FaultPlan
from return_notify.config.settings import Settings
from return_notify.devtools.chaos_report import ChaosReport, account, table
from return_notify.devtools.embedded import EmbeddedServers
from return_notify.devtools.local_providers import LocalProviders, local_providers
from return_notify.devtools.processes import Proc, start_beat, start_worker
from return_notify.devtools.sample_data import Stream, make_stream, stamp
from return_notify.storage.models import TERMINAL_STATES

#: Worker/beat settings of a chaos run: recovery paths fire within seconds (not the
#: production minutes) while keeping the invariants config/celery.py checks
#: (visibility timeout > countdown + time limit; lease > time limit).
CHAOS_ENV: dict[str, str] = {
    # a stuck batch ends after 10 s; the lease (12 s) outlives it, so a slow but live
    # worker's claim is never taken over, yet the claims of a dead one return in seconds
    "RSN_TASK_SOFT_TIME_LIMIT_S": "8", "RSN_TASK_TIME_LIMIT_S": "10", "RSN_LEASE_S": "12",
    # retries due within 5 s ride a Celery countdown, later ones wait in PostgreSQL
    "RSN_MAX_COUNTDOWN_S": "5",
    # > 5 + 10; short, so Redis gives the unacked messages of a killed worker or of a lost
    # connection (ingest batches live only in Redis) back within the run, not in an hour
    "RSN_VISIBILITY_TIMEOUT_S": "16",
    "RSN_SWEEP_INTERVAL_S": "2",  # beat re-enqueues due and lost deliveries every 2 s
    # a hung provider costs 1 s, not 10; 10 tries, backoff up to 8 s: outlast a 10 s outage
    "RSN_PROVIDER_TIMEOUT_S": "1", "RSN_MAX_ATTEMPTS": "10",
    "RSN_BACKOFF_BASE_S": "1", "RSN_BACKOFF_MAX_S": "8",
    # a provider paused by its circuit breaker retries after 2 s, not 30: the outage lasts 10
    "RSN_BREAKER_COOLDOWN_S": "2",
    "RSN_TASK_EVENTS": "false",  # no Flower here: spare the 2 cores
    # policies that hold deliveries for hours (quiet hours, per-return throttles, digests)
    # are off: the run measures recovery and must end whatever the local time
    "RSN_QUIET_HOURS_ENABLED": "false", "RSN_THROTTLE_MIN_INTERVALS": "", "RSN_DIGEST_WINDOWS": "",
}
#: WARNING keeps connection losses, restores and errors; INFO adds a line per task and the
#: Twilio SDK's request dump per SMS, a measurable share of 2 cores
WORKER_LOGLEVEL = "WARNING"
#: 20 % of provider calls fail, evenly 429 (Retry-After 1 s), 500, 503 and a 3 s hang
PROVIDER_FAULTS = (Fault("rate_limit", retry_after_s=1.0), Fault("server_error", status=500),
                   Fault("server_error", status=503), Fault("hang", seconds=3.0))
#: a provider throttling a fifth of the calls at random (429, asking for one second)
RATE_LIMIT_FAULTS = (Fault("rate_limit", retry_after_s=1.0),)


class ChaosError(RuntimeError):
    """A scenario could not finish (a deadline passed, a process died); the message says why."""


@dataclass
class Run:
    """One scenario's live state: servers, providers, processes, what was observed."""

    name: str
    servers: EmbeddedServers
    lp: LocalProviders
    env: dict[str, str]
    engine: Engine
    logdir: str
    stream: Stream
    workers: list[Proc] = field(default_factory=list)
    beat: Proc | None = None
    deadline: float = 0.0
    in_flight: set[int] = field(default_factory=set)
    fault_span: list[float] = field(default_factory=list)  # monotonic start, end
    details: dict[str, Any] = field(default_factory=dict)

    def start_worker(self, concurrency: int = 2) -> Proc:
        proc = start_worker(self.env, concurrency=concurrency, logdir=self.logdir,
                            name=f"worker{len(self.workers)}", loglevel=WORKER_LOGLEVEL)
        self.workers.append(proc)
        return proc

    def procs(self) -> list[Proc]:
        return [*self.workers, *([self.beat] if self.beat else [])]

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} pid {p.popen.pid} exit {p.popen.poll()} {p.logfile}\n"
                         f"{p.log_tail(15)}" for p in self.procs())

    def q(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def snapshot_sending(self) -> set[int]:
        """Add the deliveries claimed now ('sending') to the in-flight set and return them
        (PostgreSQL may be restarting: retried for up to 20 s)."""
        for _ in range(100):
            with suppress(DBAPIError):
                now = {r[0] for r in self.q("SELECT id FROM deliveries WHERE state = 'sending'")}
                self.in_flight |= now
                return now
            time.sleep(0.2)
        raise ChaosError(f"{self.name}: PostgreSQL unreachable for 20 s\n{self.tails()}")

    def progress(self) -> dict[str, int]:
        row = self.q(
            "SELECT (SELECT count(*) FROM events), (SELECT count(DISTINCT event_id) FROM "
            "rejected_events), count(*), count(*) FILTER (WHERE state = ANY(:t)) FROM deliveries",
            t=list(TERMINAL_STATES))[0]
        return {"events": row[0], "rejected": row[1], "deliveries": row[2], "terminal": row[3]}

    def wait(self, what: str, check: Callable[[dict[str, int]], bool],
             timeout_s: float = 1e9) -> dict[str, int]:
        """Poll until ``check(progress)``; a deadline or a process that died fails loudly."""
        until, last = min(self.deadline, time.monotonic() + timeout_s), {}
        while time.monotonic() < until:
            for p in self.procs():
                if p.popen.poll() is not None and not p.extra.get("stopped"):
                    raise ChaosError(f"{self.name}: {p.name} exited ({p.popen.returncode}) "
                                     f"while waiting for {what}\n{self.tails()}")
            with suppress(DBAPIError):
                last = self.progress()
                if check(last):
                    return last
            time.sleep(0.25)
        raise ChaosError(f"{self.name}: timed out waiting for {what}; progress {last}\n{self.tails()}")

    def unacked(self) -> dict[str, int]:
        """Messages delivered to a consumer and not acked yet, by queue ({}: Redis is down)."""
        import redis

        with suppress(redis.RedisError), redis.Redis.from_url(self.servers.redis_url,
                                                              socket_timeout=2.0) as client:
            raw = client.hvals(self.env["RSN_REDIS_KEY_PREFIX"] + "unacked")
            return dict(Counter(json.loads(v)[2] for v in cast(list[bytes], raw)))
        return {}


class MixedFaults(FaultPlan):
    """A provider's faults: each call fails with probability ``rate``, the fault drawn from
    ``mix``; ``issued`` counts what was injected."""

    def __init__(self, mix: Sequence[Fault], rate: float, seed: int, latency_s: float = 0.0) -> None:
        super().__init__(seed)
        self.mix, self.rate, self.latency_s = list(mix), rate, latency_s
        self.issued: Counter[str] = Counter()
        self._mix_rng, self._mix_lock = random.Random(seed), threading.Lock()

    def next_fault(self) -> Fault | None:
        fault = super().next_fault()
        with self._mix_lock:
            if fault is None and self._mix_rng.random() < self.rate:
                fault = self._mix_rng.choice(self.mix)
            if fault is not None:
                self.issued[f"{fault.kind}{fault.status or ''}"] += 1
        return fault


def _mid_run(run: Run, fraction: float) -> None:
    """Wait until deliveries worth ``fraction`` of the events are done (and more queued)."""
    need = int(len(run.stream.events) * fraction)
    run.wait(f"{need} terminal deliveries (mid-run)", lambda p: p["terminal"] >= need, 120)


def _fault(run: Run, act: Callable[[], str], fraction: float = 0.3, after: bool = True) -> str:
    """Mid-run and mid-send (up to 15 s for a claimed delivery that a provider has already
    accepted, the riskiest moment): note what is in flight and unacked, apply ``act``
    (timed), note what is in flight again."""
    _mid_run(run, fraction)
    for _ in range(300):
        if run.snapshot_sending() & {did for _, did in run.lp.accepted_per_delivery()}:
            break
        time.sleep(0.05)
    run.details["unacked_before"] = run.unacked()
    start = time.monotonic()
    desc = act()
    run.fault_span = [start, time.monotonic()]
    if after:
        run.snapshot_sending()
    return desc


def _kill(run: Run) -> str:
    def act() -> str:
        victim = run.workers[0]
        victim.kill()  # SIGKILL to the worker's whole process group
        victim.extra["stopped"] = "killed"
        run.snapshot_sending()  # its claims stay 'sending' until their lease ends
        run.start_worker(2)  # at once, as a supervisor would
        return f"SIGKILL of the worker group (pid {victim.popen.pid}), restarted at once"

    return _fault(run, act, 0.15, after=False)  # early: ingest batches are in flight too


def _redis_outage(run: Run) -> str:
    """The Celery pin check: a worker holding unacked messages survives Redis down ~4 s."""
    _mid_run(run, 0.2)
    for _ in range(300):
        held = run.unacked()
        if sum(held.values()) > 0:
            break
        time.sleep(0.1)
    else:
        raise ChaosError(f"{run.name}: the worker held no unacked message for 30 s\n{run.tails()}")
    took = _fault(run, lambda: f"{run.servers.restart_redis(4.0):.1f}", 0.0)
    run.details["unacked_before"] = held  # seen just before the outage
    time.sleep(5.0)
    run.details["alive_5s_after"] = all(w.popen.poll() is None for w in run.workers)
    run.details["unrecoverable_error_logged"] = any(
        "Unrecoverable error" in w.logfile.read_text(errors="replace") for w in run.workers)
    return f"pin check: Redis restarted (AOF) while the worker held unacked messages, down {took}s"


def _providers(run: Run) -> str:
    def act() -> str:
        for server in (run.lp.twilio, run.lp.sendgrid):
            server.go_down(10.0)
        time.sleep(10.0)
        return "20% of calls 429/500/503/3 s hang (timeout 1 s) throughout; both down 10 s"

    return _fault(run, act)


def _rate_limits(run: Run) -> str:
    """Both providers answer 429 to a fifth of the calls for the whole burst; a SIGKILL
    of the worker group and a Redis restart happen meanwhile."""
    def act() -> str:
        victim = run.workers[0]
        victim.kill()
        victim.extra["stopped"] = "killed"
        run.snapshot_sending()
        run.start_worker(2)
        _mid_run(run, 0.5)
        took = run.servers.restart_redis(1.0)
        return (f"20% of calls 429 throughout; SIGKILL of the worker group, then Redis "
                f"restarted (down {took:.1f}s)")

    return _fault(run, act, 0.2, after=False)


def _warm(run: Run) -> str:
    def act() -> str:
        victim = run.workers[0]
        victim.extra["stopped"] = "warm"
        victim.popen.send_signal(signal.SIGTERM)  # the main process only, as a supervisor does
        try:
            code = victim.popen.wait(30)
        except Exception as exc:
            raise ChaosError(f"{run.name}: warm shutdown took over 30 s\n{run.tails()}") from exc
        run.details.update(warm_exit_code=code, unacked_after_shutdown=run.unacked())
        run.start_worker(2)
        return f"SIGTERM to the worker (warm shutdown, exit {code}), then a new worker"

    return _fault(run, act, after=False)


SCENARIOS: dict[str, Callable[[Run], str]] = {
    "worker-kill": _kill,
    "redis-restart": lambda run: _fault(
        run, lambda: f"Redis restarted (AOF), down {run.servers.restart_redis(1.0):.1f}s"),
    "postgres-restart": lambda run: _fault(
        run, lambda: f"PostgreSQL restarted (fast shutdown), down "
                     f"{run.servers.restart_postgres(3.0):.1f}s"),
    "provider-faults": _providers, "redis-outage": _redis_outage, "warm-shutdown": _warm,
    "rate-limits": _rate_limits,
    "baseline": lambda run: "no fault",
}


def _database(servers: EmbeddedServers, name: str) -> str:
    """A fresh database on ``servers``, migrated to head; returns its URL."""
    from alembic import command

    from return_notify.storage.migrate import alembic_config

    base = make_url(servers.database_url)
    engine = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name).render_as_string(hide_password=False)
    # a plain connection, not a transaction: migrations run one transaction each and may
    # step out of it for CREATE INDEX CONCURRENTLY
    migrate_engine = create_engine(url, poolclass=NullPool)
    with migrate_engine.connect() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    migrate_engine.dispose()
    engine.dispose()
    return url


def run_scenario(name: str, servers: EmbeddedServers, n_events: int = 5000,
                 timeout_s: float = 240.0, logdir: str | None = None) -> ChaosReport:
    """Run one scenario end to end on ``servers`` (which it may restart) and account for it.

    Raises ``ChaosError`` (with log tails) when the run does not settle by ``timeout_s``.
    """
    from return_notify.producer import publish_raw_batches

    tag = uuid.uuid4().hex[:8]
    url = _database(servers, f"rsn_chaos_{tag}")
    with local_providers() as lp:
        env = {"RSN_BROKER_URL": servers.redis_url, "RSN_DATABASE_URL": url,
               "RSN_REDIS_KEY_PREFIX": f"chaos-{tag}:", **lp.env(), **CHAOS_ENV}
        stream = make_stream(n_events=n_events, min_returns=n_events // 8, prefix=f"{tag}-")
        run = Run(name, servers, lp, env, create_engine(url, poolclass=NullPool),
                  logdir or tempfile.mkdtemp(prefix=f"rsn-chaos-{name}-"), stream,
                  deadline=time.monotonic() + timeout_s)
        if name in ("provider-faults", "rate-limits"):
            mix = PROVIDER_FAULTS if name == "provider-faults" else RATE_LIMIT_FAULTS
            for server in (lp.twilio, lp.sendgrid):
                server.faults = MixedFaults(mix, 0.2, seed=len(server.name))
        try:
            run.start_worker(2)
            run.beat = start_beat(env, logdir=run.logdir)
            events = stamp(stream.events)
            t0 = time.monotonic()
            publish_raw_batches([events[i:i + 200] for i in range(0, len(events), 200)],
                                settings=Settings(broker_url=servers.redis_url,
                                                  redis_key_prefix=env["RSN_REDIS_KEY_PREFIX"]))
            fault = SCENARIOS[name](run)
            run.wait("every event stored and every delivery terminal", lambda p: (
                p["events"] >= stream.unique_valid and p["rejected"] >= stream.invalid
                and p["deliveries"] == p["terminal"]))
            done = time.monotonic()
            time.sleep(1.5)  # redundant messages (sweeps, restored ones) run and find nothing
            with run.engine.connect() as conn:
                report = account(conn, name, fault, stream, lp.accepted_per_delivery(),
                                 run.in_flight)
            report.details.update(run.details)
            start, end = (run.fault_span + [done, done])[:2]
            report.fault_at_s, report.fault_duration_s = round(start - t0, 1), round(end - start, 1)
            report.recovery_s, report.elapsed_s = round(done - end, 1), round(done - t0, 1)
            report.deliveries_per_s = round(report.deliveries / max(0.1, done - t0), 1)
            report.workers_alive = all(w.popen.poll() is None for w in run.workers
                                       if not w.extra.get("stopped"))
            for server in (lp.twilio, lp.sendgrid):
                if isinstance(server.faults, MixedFaults):
                    report.details[f"{server.name}_faults"] = dict(server.faults.issued)
            report.details["logdir"] = run.logdir  # worker/beat logs and this report
            Path(run.logdir, "report.json").write_text(json.dumps(report.to_json(), indent=1))
            return report
        finally:
            for proc in reversed(run.procs()):
                proc.stop(15)
            run.engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fault injection under load, exactly accounted.")
    parser.add_argument("--scenario", default="all", choices=["all", *SCENARIOS])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--timeout", type=float, default=240.0, help="per scenario, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n for n in SCENARIOS if n != "baseline"] if args.scenario == "all" else [args.scenario]
    reports: list[ChaosReport] = []
    try:
        with EmbeddedServers() as servers:
            for name in names:
                reports.append(run_scenario(name, servers, args.events, args.timeout))
                print(f"{name}: {'ok' if reports[-1].ok else 'NOT OK'}", file=sys.stderr, flush=True)
    except ChaosError as exc:
        print(f"chaos run failed: {exc}", file=sys.stderr)
        return 2
    out = json.dumps([r.to_json() for r in reports], indent=2) if args.json else table(reports)
    print(out)
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
