"""API request metrics, the rate-limit hook and queue key names (no network)."""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
from typing import Any

from return_notify.observability.metrics import queue_keys


def _value(text: str, series: str) -> float:
    """The sample value of ``series`` (name and labels, then a space) in a scrape; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(series):
            return float(line[len(series):])
    return 0.0


def _instrumented() -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from return_notify.observability.metrics import instrument_app

    app = FastAPI()

    @app.get("/v1/returns/{return_id}")
    def get_return(return_id: str) -> dict[str, str]:
        return {"id": return_id}

    instrument_app(app)
    return TestClient(app)


def _scrape() -> str:
    from return_notify.observability.http_metrics import scrape

    return scrape().decode()


def test_instrumented_app_counts_requests_by_route_template() -> None:
    # given
    client = _instrumented()
    series = 'rsn_api_requests_total{method="GET",route="/v1/returns/{return_id}",status="200"} '
    timing = 'rsn_api_request_seconds_count{method="GET",route="/v1/returns/{return_id}"} '
    # the counters are per process: other tests in this process may have counted already
    before = _scrape()
    # when
    for rid in ("RMA-1", "RMA-2", "RMA-3"):
        assert client.get(f"/v1/returns/{rid}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    body = _scrape()
    # then: one series per route template (never per id), statuses kept apart
    assert _value(body, series) - _value(before, series) == 3.0
    assert 'route="unmatched",status="404"' in body
    assert "RMA-1" not in body
    assert _value(body, timing) - _value(before, timing) == 3.0


def test_the_public_app_does_not_serve_metrics() -> None:
    # the endpoint lives on an internal port (start_api_endpoint), not beside the public API
    client = _instrumented()
    assert client.get("/metrics").status_code == 404
    assert "/metrics" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_random_methods_and_paths_cannot_grow_the_series() -> None:
    # given: 300 requests with made-up methods and paths, as a scanner would send
    client = _instrumented()
    rng = random.Random(9)

    def word(n: int) -> str:
        return "".join(rng.choice(string.ascii_uppercase) for _ in range(n))

    # when (the registry is the process's own: other tests' routes may be in it already)
    before = {line.split(" ")[0] for line in _scrape().splitlines()
              if line.startswith("rsn_api_requests_total{")}
    for i in range(300):
        method = word(rng.randint(3, 12)) if i % 3 else rng.choice(["GET", "POST", "delete"])
        client.request(method, f"/{word(8).lower()}/{i}")
    body = _scrape()
    # then: every label value these requests added comes from a finite set
    series = [line for line in body.splitlines() if line.startswith("rsn_api_requests_total{")
              and line.split(" ")[0] not in before]
    methods = {re.search(r'method="([^"]*)"', s).group(1) for s in series}  # type: ignore[union-attr]
    routes = {re.search(r'route="([^"]*)"', s).group(1) for s in series}  # type: ignore[union-attr]
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"}
    assert routes <= {"unmatched"}
    assert 'method="OTHER",route="unmatched"' in body and 'method="DELETE",route="unmatched"' in body
    assert len(series) <= 8 * 2 * 10  # methods x routes x a few statuses, not 300


def test_instrumenting_two_apps_in_one_process_shares_the_metrics() -> None:
    from fastapi import FastAPI

    from return_notify.observability.metrics import instrument_app

    apps = [FastAPI(), FastAPI()]
    for a in apps:
        instrument_app(a)  # no "duplicated timeseries" error
    assert "rsn_api_requests_in_progress" in _scrape()


def test_every_metric_fits_one_plain_registry_without_a_name_clash() -> None:
    # a counter named X exports X_total and X_created: two counters "rsn_deliveries" and
    # "rsn_deliveries_created" cannot both be registered in a plain registry
    from prometheus_client import CollectorRegistry

    from return_notify.observability.metrics import _WorkerMetrics

    registry = CollectorRegistry()
    for metric in vars(_WorkerMetrics()).values():
        registry.register(metric)  # raises ValueError("Duplicated timeseries ...") on a clash
    assert "rsn_deliveries_planned" in {m.name for m in registry.collect()}


def test_rate_limit_waits_are_counted_in_a_worker_process(tmp_path: object) -> None:
    # a process set up like a pool process: metrics port set, multiprocess dir exported
    code = """
import os
from return_notify.observability.metrics import observe_rate_limit_wait
observe_rate_limit_wait("twilio", 0.25)
observe_rate_limit_wait("twilio", 0.5)
observe_rate_limit_wait("twilio", 2.0, "tenant")
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
r = CollectorRegistry()
MultiProcessCollector(r, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
print(generate_latest(r).decode())
"""
    env = {**os.environ, "RSN_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert 'rsn_rate_limit_waits_total{limit="provider",provider="twilio"} 2.0' in out
    assert 'rsn_rate_limit_wait_seconds_total{limit="provider",provider="twilio"} 0.75' in out
    assert 'rsn_rate_limit_waits_total{limit="tenant",provider="twilio"} 1.0' in out


def test_hooks_are_no_ops_without_a_metrics_port() -> None:
    code = """
from return_notify.observability.metrics import observe_rate_limit_wait, _state
observe_rate_limit_wait("twilio", 1.0)
print(_state.metrics is None)
"""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RSN_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "True"


def test_queue_keys_cover_every_kombu_priority_level() -> None:
    assert queue_keys("p:", "email") == ["p:email", "p:email\x06\x163", "p:email\x06\x166",
                                         "p:email\x06\x169"]


_OPEN_BREAKER = """
import os, signal, sys, time
from return_notify.observability.metrics import observe_breaker
observe_breaker("twilio", True)
print("open", flush=True)
if sys.argv[1] == "die":
    os.kill(os.getpid(), signal.SIGKILL)  # no worker_process_shutdown, no mark_process_dead
time.sleep(60)
"""


def _breaker_open(path: str) -> float | None:
    from prometheus_client import CollectorRegistry, generate_latest

    from return_notify.observability.multiprocess import LiveProcessCollector

    registry = CollectorRegistry()
    registry.register(LiveProcessCollector(path))  # type: ignore[arg-type]
    body = generate_latest(registry).decode()
    line = 'rsn_provider_breaker_open{provider="twilio"} '
    return _value(body, line) if line in body else None


def test_a_killed_processs_live_gauge_is_dropped_at_the_next_scrape(tmp_path: Any) -> None:
    # given: a child of this process (like a pool process of a worker) with its breaker open
    env = {**os.environ, "RSN_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    child = subprocess.Popen([sys.executable, "-c", _OPEN_BREAKER, "live"], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "open"
        # then: while it lives, its gauge counts
        assert _breaker_open(str(tmp_path)) == 1.0
        # when: it is killed with SIGKILL (it can tell nobody)
        child.kill()
        child.wait(10)
        # then: the next scrape no longer shows the provider paused
        assert not _breaker_open(str(tmp_path))
    finally:
        child.kill()
        child.wait(10)


def test_counters_of_a_killed_process_stay(tmp_path: Any) -> None:
    env = {**os.environ, "RSN_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", _OPEN_BREAKER, "die"], env=env, timeout=60,
                   capture_output=True)
    assert not _breaker_open(str(tmp_path))
    from prometheus_client import CollectorRegistry, generate_latest

    from return_notify.observability.multiprocess import LiveProcessCollector

    registry = CollectorRegistry()
    registry.register(LiveProcessCollector(str(tmp_path)))  # type: ignore[arg-type]
    body = generate_latest(registry).decode()
    assert _value(body, 'rsn_provider_breaker_trips_total{provider="twilio"} ') == 1.0


def test_the_source_lag_is_observed_per_source_kind_with_bounded_labels(tmp_path: object) -> None:
    # given: an ingest result as a pool process sees it (sources as producers write them)
    code = """
import os
from types import SimpleNamespace
from return_notify.observability.metrics import observe_ingest
observe_ingest(SimpleNamespace(source_lags=[
    ("wms", 30.0), ("acme-WMS-eu", 90000.0), ("carrier:ups", 7200.0), (None, 2.0),
    ("returns-portal", -1.0), ("x" * 64, 3.0), ("erp", 400000.0)]))
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
r = CollectorRegistry()
MultiProcessCollector(r, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
print(generate_latest(r).decode())
"""
    env = {**os.environ, "RSN_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    # when
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    # then: one series per kind, whatever the producer wrote; a clock ahead counts as 0
    assert _value(out, 'rsn_source_lag_seconds_count{source="wms"} ') == 2
    assert _value(out, 'rsn_source_lag_seconds_sum{source="wms"} ') == 90030.0
    assert _value(out, 'rsn_source_lag_seconds_bucket{le="60.0",source="wms"} ') == 1
    assert _value(out, 'rsn_source_lag_seconds_bucket{le="259200.0",source="erp"} ') == 0
    assert _value(out, 'rsn_source_lag_seconds_bucket{le="+Inf",source="erp"} ') == 1
    for kind in ("carrier", "none", "portal", "other"):
        assert _value(out, f'rsn_source_lag_seconds_count{{source="{kind}"}} ') == 1, kind
    assert _value(out, 'rsn_source_lag_seconds_sum{source="portal"} ') == 0.0
    labels = set(re.findall(r'rsn_source_lag_seconds_count\{source="([^"]+)"\}', out))
    assert labels == {"wms", "erp", "carrier", "portal", "other", "none"}
