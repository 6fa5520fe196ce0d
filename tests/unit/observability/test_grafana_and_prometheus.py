"""The Grafana dashboard and the Prometheus scrape example stay in step with the metrics the
code exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import return_notify.observability.http_metrics as metrics_api
import return_notify.observability.metrics as metrics
from tests.helpers import REPO_ROOT

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "return-notify.json"


def defined_metrics() -> set[str]:
    source = Path(metrics.__file__).read_text() + Path(metrics_api.__file__).read_text()
    return set(re.findall(r'"(rsn_[a-z_]+)"', source))


def test_every_dashboard_query_uses_a_metric_the_code_exports() -> None:
    # given
    dash = json.loads(DASHBOARD.read_text())
    known = defined_metrics()
    # when
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m)
            for e in exprs for m in re.findall(r"\b(rsn_[a-z_]+)", e)}
    # then
    assert used and used <= known, used - known
    assert {"rsn_queue_depth", "rsn_notification_latency_seconds", "rsn_deliveries",
            "rsn_rate_limit_waits", "rsn_api_requests", "rsn_events"} <= used
    assert any("flower_events_total" in e for e in exprs)


def test_dashboard_panels_have_unique_ids_and_do_not_overlap() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not (mine & cells), p["title"]
        cells |= mine
        assert g["x"] + g["w"] <= 24


def test_prometheus_example_scrapes_workers_api_and_flower() -> None:
    yaml = pytest.importorskip("yaml")
    conf = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert all(name.startswith("return-notify") for name in jobs)  # the dashboard's $job filter
    assert {"return-notify-workers", "return-notify-api", "return-notify-flower"} <= set(jobs)
    assert jobs["return-notify-api"]["metrics_path"] == "/metrics"
