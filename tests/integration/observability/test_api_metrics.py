"""`return-notify api --workers 2` with RSN_API_METRICS_PORT: request metrics of both server
processes summed on an internal port, none on the public one, bounded labels, and the
connections named for PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from return_notify.devtools.processes import stop_process
from return_notify.storage.db import session_scope
from tests.helpers import wait_until
from tests.integration.provider_helpers import free_port

pytestmark = pytest.mark.integration


def _request(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def _requests_by_labels(body: str) -> dict[tuple[str, str, str], float]:
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "rsn_api_requests_total":
                out[(s.labels["method"], s.labels["route"], s.labels["status"])] = s.value
    return out


def test_api_metrics_sum_every_server_process_on_an_internal_port(svc: Any, tmp_path: Path) -> None:
    # given: two server processes, metrics on their own port
    port, metrics_port = free_port(), free_port()
    log = tmp_path / "api.log"
    env = {**os.environ, **svc.env(RSN_API_METRICS_PORT=str(metrics_port),
                                   RSN_METRICS_DIR=str(tmp_path / "prom"))}
    env.pop("PGAPPNAME", None)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "return_notify.cli", "api", "--port", str(port),
             "--workers", "2"], env=env, stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    base, internal = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        wait_until(lambda: _request(base + "/healthz")[0] == 200, timeout_s=60, what="the API")
        wait_until(lambda: log.read_text().count("Started server process") >= 2, timeout_s=60,
                   what="both server processes")
        before = _requests_by_labels(_request(internal)[1])
        # when: requests over fresh connections (the kernel spreads them over both
        # processes), some with made-up methods
        for i in range(40):
            assert _request(base + "/healthz")[0] == 200
            _request(f"{base}/scan/{i}", method=f"X{i}")
        status, body = _request(internal)
        # then: the internal endpoint sums both processes exactly
        assert status == 200
        after = _requests_by_labels(body)
        healthz = ("GET", "/healthz", "200")
        assert after.get(healthz, 0) - before.get(healthz, 0) == 40
        assert {m for m, _r, _s in after} <= {"GET", "HEAD", "POST", "OTHER"}
        assert {r for _m, r, _s in after} <= {"/healthz", "unmatched"}
        # the public port has no /metrics
        assert _request(base + "/metrics")[0] == 404
        # PostgreSQL sees the API's connections under their name
        with session_scope() as s:
            names = set(s.execute(text(
                "SELECT application_name FROM pg_stat_activity WHERE datname = "
                "current_database()")).scalars())
        assert "return-notify-api" in names
        assert "return-notify-cli" in names  # this test process
    finally:
        stop_process(proc, 20)
