"""API request metrics, the rate-limit hook and queue key names (no network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from return_notify.observability.metrics import queue_keys


def _value(text: str, series: str) -> float:
    """The sample value of ``series`` (name and labels, then a space) in a scrape; 0 if absent."""
    for line in text.splitlines():
        if line.startswith(series):
            return float(line[len(series):])
    return 0.0


def test_instrumented_app_counts_requests_by_route_template() -> None:
    # given
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from return_notify.observability.metrics import instrument_app

    app = FastAPI()

    @app.get("/v1/returns/{return_id}")
    def get_return(return_id: str) -> dict[str, str]:
        return {"id": return_id}

    instrument_app(app)
    client = TestClient(app)
    series = 'rsn_api_requests_total{method="GET",route="/v1/returns/{return_id}",status="200"} '
    timing = 'rsn_api_request_seconds_count{method="GET",route="/v1/returns/{return_id}"} '
    # the counters are per process: other tests in this process may have counted already
    before = client.get("/metrics").text
    # when
    for rid in ("RMA-1", "RMA-2", "RMA-3"):
        assert client.get(f"/v1/returns/{rid}").status_code == 200
    assert client.get("/nowhere").status_code == 404
    body = client.get("/metrics").text
    # then: one series per route template (never per id), statuses kept apart
    assert _value(body, series) - _value(before, series) == 3.0
    assert 'route="unmatched",status="404"' in body
    assert "RMA-1" not in body
    assert _value(body, timing) - _value(before, timing) == 3.0
    assert "/metrics" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_instrumenting_two_apps_in_one_process_shares_the_metrics() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from return_notify.observability.metrics import instrument_app

    apps = [FastAPI(), FastAPI()]
    for a in apps:
        instrument_app(a)  # no "duplicated timeseries" error
    assert TestClient(apps[1]).get("/metrics").status_code == 200


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
