"""Prometheus metrics of the workers and the API: definitions, task hooks and endpoints.

Workers (prefork pool): **multiprocess mode**. Every pool process writes its counters and
histograms to memory-mapped files in one directory per worker (``RSN_METRICS_DIR``, else
``PROMETHEUS_MULTIPROC_DIR``, else a fresh temporary directory), and the worker's main
process serves ``http://RSN_METRICS_ADDRESS:RSN_METRICS_PORT/metrics`` summing them all.
Chosen over one port per pool process because pool processes come and go (autoscale,
``max_tasks_per_child`` recycling): with one port each, Prometheus would need a target per
child and would lose a recycled child's counts; here one target per worker sees them all,
and a dead child's totals stay in its file. The directory is chosen and exported in the
main process at ``worker_init`` (before the pool forks) and wiped there (the Celery
signals are connected in ``workers/signals.py``; this module imports no Celery); queue depths
are read from Redis (``LLEN``) by a collector in the main process at scrape time.

The live gauges of a pool process that is gone (recycled, or killed by SIGKILL or the OOM
killer, which no signal reports) are dropped at scrape time (``observability.multiprocess``).

The API (``instrument_app``, ``observability.http_metrics``): request counts and durations by
route template, with bounded labels, served on an internal port of their own
(``RSN_API_METRICS_PORT``), never on the public API port; multiprocess for ``api --workers N``.
Metrics never fail a task or a request: a broken observation is logged and dropped.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from return_notify.observability import multiprocess

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)

#: occurred_at → sent: from sub-second to a day (events may be published late)
LATENCY_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                     7200, 21600, 86400)
#: occurred_at → stored at ingest (the source's lag): a live portal's seconds to a nightly
#: export's day and a slow carrier feed's week
SOURCE_LAG_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400,
                        3 * 86400, 7 * 86400)
#: the ``source`` label's values: the event's ``source`` reduced to its kind (bounded)
SOURCE_KINDS = ("wms", "erp", "carrier", "portal", "other", "none")
PROVIDER_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: kombu's Redis transport keeps priority levels in separate lists: queue, queue\x06\x163, ...
PRIORITY_STEPS = (0, 3, 6, 9)
_PRIORITY_SEP = "\x06\x16"


class _WorkerMetrics:
    """The worker's metric objects (one set per process, values in the shared directory)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.deliveries = Counter(
            "rsn_deliveries", "Deliveries processed by a deliver task, by the provider that "
            "answered and the call's outcome (sent, transient, rate_limited, permanent; "
            "skipped: no call)", ["channel", "provider", "outcome"], registry=None)
        self.states = Counter(
            "rsn_delivery_states", "State a processed delivery moved to (sent, retrying, "
            "failed, dead, skipped)", ["channel", "state"], registry=None)
        self.by_tenant = Counter(
            "rsn_tenant_deliveries", "Deliveries processed, by tenant and call outcome",
            ["tenant", "channel", "outcome"], registry=None)
        self.provider_seconds = Histogram(
            "rsn_provider_call_seconds", "Provider call duration, each call timed on its own "
            "(a provider with a batch API: its call's time divided by its messages)", ["channel", "provider"],
            buckets=PROVIDER_BUCKETS_S, registry=None)
        self.latency = Histogram(
            "rsn_notification_latency_seconds", "Time from the event's occurred_at to the "
            "notification sent", ["channel"], buckets=LATENCY_BUCKETS_S, registry=None)
        self.rate_limit_waits = Counter(
            "rsn_rate_limit_waits", "Sends held back by the global rate limiter, by the "
            "bucket that was empty (limit: tenant or provider) and the channel's provider",
            ["limit", "provider"], registry=None)
        self.rate_limit_wait_seconds = Counter(
            "rsn_rate_limit_wait_seconds", "Summed wait imposed by the global rate limiter",
            ["limit", "provider"], registry=None)
        self.source_lag = Histogram(
            "rsn_source_lag_seconds", "Time from an event's occurred_at (the status change in "
            "the source system) to ingest storing it: the upstream's share of the time to "
            "status update, by source kind (wms, erp, carrier, portal, other, none)",
            ["source"], buckets=SOURCE_LAG_BUCKETS_S, registry=None)
        self.events = Counter(
            "rsn_events", "Events ingested, by disposition (notified, stale, repeat, "
            "no_channel, duplicate, rejected)", ["disposition"], registry=None)
        # not "rsn_deliveries_created": a counter exports <name>_created beside <name>_total,
        # which would clash with rsn_deliveries above in a plain registry
        self.planned = Counter(
            "rsn_deliveries_planned", "Delivery rows created by ingest", ["channel"],
            registry=None)
        self.superseded = Counter(
            "rsn_deliveries_superseded", "Waiting deliveries skipped because a newer "
            "milestone superseded them", registry=None)
        self.drained = Counter(
            "rsn_drained_messages", "Messages a running task took from its queue besides "
            "its own (adaptive batching; they are not Celery tasks of their own)", ["task"],
            registry=None)
        self.ingest_gate = Counter(
            "rsn_ingest_gate", "Ingest tasks by how they passed the worker's ingest gate "
            "(free, waited: another batch committed first; backlog, timeout: ingested in "
            "parallel; off)", ["outcome"], registry=None)
        self.breaker_open = Gauge(
            "rsn_provider_breaker_open", "1 while a provider's circuit breaker holds it "
            "paused in at least one live worker process", ["provider"],
            multiprocess_mode="livemax", registry=None)
        self.breaker_trips = Counter(
            "rsn_provider_breaker_trips", "Times a provider's circuit breaker opened "
            "(re-opening after a failed trial call included)", ["provider"], registry=None)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled: bool | None = None
        self.metrics: _WorkerMetrics | None = None
        self.server: Any = None
        self.owned_dir: str | None = None


_state = _State()


def _enabled() -> bool:
    if _state.enabled is None:
        from return_notify.config.settings import get_settings

        _state.enabled = get_settings().metrics_port is not None and bool(
            os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    return _state.enabled


def _worker_metrics() -> _WorkerMetrics | None:
    if not _enabled():
        return None
    if _state.metrics is None:
        with _state.lock:
            if _state.metrics is None:
                _state.metrics = _WorkerMetrics()
    return _state.metrics


# ------------------------------------------------------------------ hooks -------------

def observe_deliver(channel: str, outcome: Any) -> None:
    """Called by the deliver task after each batch with its ``DeliverOutcome``."""
    m = _worker_metrics()
    if m is None:
        return
    try:
        tenants: dict[int, str] = getattr(outcome, "tenants", {}) or {}
        per_tenant = _per_tenant()
        for a in getattr(outcome, "attempts", []) or []:
            provider = a.get("provider") or "none"
            result = a.get("outcome") or "unknown"
            m.deliveries.labels(channel, provider, result).inc()
            if per_tenant and a.get("delivery_id") in tenants:
                m.by_tenant.labels(tenants[a["delivery_id"]], channel, result).inc()
            if a.get("provider") and a.get("duration_ms") is not None:
                m.provider_seconds.labels(channel, provider).observe(
                    float(a["duration_ms"]) / 1000.0)
        states: dict[str, int] = dict(getattr(outcome, "states", {}) or {})
        for state, n in states.items():
            if n:
                m.states.labels(channel, state).inc(n)
        if states.get("skipped"):
            m.deliveries.labels(channel, "none", "skipped").inc(states["skipped"])
        for seconds in getattr(outcome, "sent_latencies_s", []) or []:
            m.latency.labels(channel).observe(max(0.0, float(seconds)))
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("deliver metrics dropped", exc_info=True)
    for limit, provider, seconds in getattr(outcome, "throttle_waits", []) or []:
        observe_rate_limit_wait(provider, seconds, limit)


def source_kind(source: str | None) -> str:
    """An event's ``source`` as one of :data:`SOURCE_KINDS` (``carrier:ups`` → ``carrier``,
    ``returns-portal`` → ``portal``, ``acme-wms-eu`` → ``wms``): a bounded label whatever
    producers write there."""
    if not source or not source.strip():
        return "none"
    s = source.strip().lower()
    for kind in ("carrier", "portal", "wms", "erp"):
        if kind in s:
            return kind
    return "other"


def observe_ingest(result: Any) -> None:
    """Called by the ingest task after each batch with its ``IngestResult``."""
    m = _worker_metrics()
    if m is None:
        return
    try:
        for disposition, n in dict(getattr(result, "by_disposition", {}) or {}).items():
            if n:
                m.events.labels(disposition).inc(n)
        if getattr(result, "duplicates", 0):
            m.events.labels("duplicate").inc(result.duplicates)
        if getattr(result, "rejected", 0):
            m.events.labels("rejected").inc(result.rejected)
        for ch, ids in dict(getattr(result, "deliveries", {}) or {}).items():
            if ids:
                m.planned.labels(ch).inc(len(ids))
        if getattr(result, "superseded", 0):
            m.superseded.inc(result.superseded)
        for source, seconds in getattr(result, "source_lags", []) or []:
            m.source_lag.labels(source_kind(source)).observe(max(0.0, float(seconds)))
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("ingest metrics dropped", exc_info=True)


def observe_ingest_gate(outcome: str) -> None:
    """An ingest task passed the worker's ingest gate (``workers/ingest_gate.py``)."""
    m = _worker_metrics()
    if m is None:
        return
    try:
        m.ingest_gate.labels(outcome).inc()
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("ingest gate metrics dropped", exc_info=True)


def observe_drained(task: str, n: int) -> None:
    """A task drained ``n`` more messages of its kind from its queue."""
    m = _worker_metrics()
    if m is None or n <= 0:
        return
    try:
        m.drained.labels(task).inc(n)
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("drain metrics dropped", exc_info=True)


def observe_rate_limit_wait(provider: str, seconds: float, limit: str = "provider") -> None:
    """One send to ``provider`` held back for ``seconds`` by the global rate limiter's
    ``limit`` bucket (``tenant`` or ``provider``: see ``pipeline.deliver._throttle``)."""
    m = _worker_metrics()
    if m is None:
        return
    try:
        m.rate_limit_waits.labels(limit, provider).inc()
        m.rate_limit_wait_seconds.labels(limit, provider).inc(max(0.0, float(seconds)))
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("rate-limit metrics dropped", exc_info=True)


def observe_breaker(provider: str, is_open: bool) -> None:
    """A provider's circuit breaker opened or closed in this process (``channels.breaker``)."""
    m = _worker_metrics()
    if m is None:
        return
    try:
        m.breaker_open.labels(provider).set(1 if is_open else 0)
        if is_open:
            m.breaker_trips.labels(provider).inc()
    except Exception:  # noqa: BLE001 - metrics never fail a task
        log.warning("breaker metrics dropped", exc_info=True)


def _per_tenant() -> bool:
    from return_notify.config.settings import get_settings

    return get_settings().metrics_per_tenant


# ------------------------------------------------------------------ queue depths ------

def queue_keys(prefix: str, queue: str) -> list[str]:
    """The Redis lists holding ``queue``'s messages, one per kombu priority level."""
    return [prefix + queue + ("" if p == 0 else f"{_PRIORITY_SEP}{p}") for p in PRIORITY_STEPS]


class QueueDepthCollector:
    """``rsn_queue_depth{queue}`` (messages waiting), ``rsn_broker_unacked`` and
    ``rsn_broker_up``, read from Redis at scrape time (one pipelined round trip)."""

    def __init__(self, broker_url: str, prefix: str, queues: Iterable[str]) -> None:
        self._url, self._prefix, self._queues = broker_url, prefix, list(queues)
        self._client: Any = None

    def describe(self) -> list[Any]:
        return []  # no I/O when registered

    def collect(self) -> Iterator[Any]:
        import redis
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily("rsn_queue_depth", "Messages waiting in a broker queue "
                                  "(all priority levels)", labels=["queue"])
        unacked = GaugeMetricFamily("rsn_broker_unacked", "Messages delivered to workers and "
                                    "not yet acknowledged (incl. countdowns)")
        up = GaugeMetricFamily("rsn_broker_up", "1 if Redis answered the queue-depth scrape")
        try:
            if self._client is None:
                from return_notify.storage.redis import redis_client

                self._client = redis_client(url=self._url, timeout_s=2.0)
            pipe = self._client.pipeline(transaction=False)
            for q in self._queues:
                for key in queue_keys(self._prefix, q):
                    pipe.llen(key)
            pipe.hlen(self._prefix + "unacked")
            values = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depth scrape failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        n = len(PRIORITY_STEPS)
        for i, q in enumerate(self._queues):
            depth.add_metric([q], sum(values[i * n:(i + 1) * n]))
        unacked.add_metric([], values[-1])
        up.add_metric([], 1)
        yield from (depth, unacked, up)


# ------------------------------------------------------------------ worker endpoint ---

def setup_worker_metrics() -> None:
    """Main process, before the pool forks: pick, wipe and export the multiprocess dir."""
    from return_notify.config.settings import get_settings

    settings = get_settings()
    if settings.metrics_port is None:
        return
    path, owned = multiprocess.prepare_dir(settings.metrics_dir)
    if owned:
        _state.owned_dir = path
    multiprocess.enable(path)  # inherited by every pool process
    _state.enabled = None


def start_worker_endpoint(queues: list[str], consuming: set[str] | None = None) -> None:
    """Main process, once the worker consumes: serve every pool process's metrics (and the
    depth of ``queues``); the live gauges of pool processes that are gone (recycled, or
    killed by SIGKILL or the OOM killer) are dropped at each scrape. The worker consuming
    ``maintenance`` also serves the age of the oldest due delivery (``backlog``)."""
    from return_notify.config.settings import get_settings

    settings = get_settings()
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if settings.metrics_port is None or not path:
        return
    collectors: list[Any] = [multiprocess.LiveProcessCollector(path)]
    if settings.broker_url and queues:
        collectors.append(QueueDepthCollector(settings.broker_url, settings.redis_key_prefix, queues))
    if consuming and "maintenance" in consuming and settings.database_url:
        from return_notify.observability.backlog import BacklogCollector

        collectors.append(BacklogCollector(("email", "sms", "inapp")))
    _state.server = multiprocess.serve(settings.metrics_port, settings.metrics_address, collectors)


def pool_process_gone(pid: int | None = None) -> None:
    """A pool process exited: its live gauges no longer count (its counters stay)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path and _state.metrics is not None:
        from prometheus_client import multiprocess as prom_multiprocess

        prom_multiprocess.mark_process_dead(pid or os.getpid(), path)  # live gauges only


def stop_worker_endpoint() -> None:
    """The worker stops: close the endpoint and remove a directory we created."""
    if _state.server is not None:
        _state.server.shutdown()
        _state.server = None
    if _state.owned_dir:
        shutil.rmtree(_state.owned_dir, ignore_errors=True)
        _state.owned_dir = None


# ------------------------------------------------------------------ API ---------------

def instrument_app(app: FastAPI) -> None:
    """Count and time every request by route template (``http_metrics.instrument``; the
    endpoint is ``http_metrics.start_api_endpoint``, on an internal port)."""
    from return_notify.observability.http_metrics import instrument

    instrument(app)
