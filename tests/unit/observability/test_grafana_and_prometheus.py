"""The Grafana dashboard, the Prometheus configuration and the alert rules stay in step with
the metrics the code exports; promtool checks the configuration and runs the rules' tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import return_notify.observability.backlog as backlog
import return_notify.observability.http_metrics as metrics_api
import return_notify.observability.metrics as metrics
from tests.helpers import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "return-notify.json"


def defined_metrics() -> set[str]:
    source = "".join(Path(m.__file__).read_text() for m in (metrics, metrics_api, backlog))
    return set(re.findall(r'"(rsn_[a-z_]+)"', source))


def used_metrics(exprs: list[str]) -> set[str]:
    return {re.sub(r"_(total|bucket|count|sum)$", "", m)
            for e in exprs for m in re.findall(r"\b(rsn_[a-z_]+)", e)}


def test_every_dashboard_query_uses_a_metric_the_code_exports() -> None:
    # given
    dash = json.loads(DASHBOARD.read_text())
    known = defined_metrics()
    # when
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = used_metrics(exprs)
    # then
    assert used and used <= known, used - known
    assert {"rsn_queue_depth", "rsn_notification_latency_seconds", "rsn_deliveries",
            "rsn_rate_limit_waits", "rsn_api_requests", "rsn_events", "rsn_backlog_age_seconds",
            "rsn_provider_breaker_open"} <= used
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


def test_prometheus_finds_every_replica_and_loads_the_alert_rules() -> None:
    conf = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert all(name.startswith("return-notify") for name in jobs)  # the dashboard's $job filter
    assert {"return-notify-workers", "return-notify-api", "return-notify-flower"} <= set(jobs)
    # DNS discovery (every replica of a scaled service), not a static name that resolves to one
    for job in ("return-notify-workers", "return-notify-api"):
        assert "static_configs" not in jobs[job] and jobs[job]["dns_sd_configs"], job
        assert all(d["type"] == "A" for d in jobs[job]["dns_sd_configs"])
    assert conf["rule_files"] == ["alerts.yml"]
    k8s = yaml.safe_load((DEPLOY / "prometheus-kubernetes.yml").read_text())
    assert [j["job_name"] for j in k8s["scrape_configs"]] == ["return-notify-k8s"]


def _alerts() -> dict[str, dict[str, object]]:
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return {r["alert"]: r for g in rules["groups"] for r in g["rules"]}


def test_alert_rules_cover_what_an_operator_must_hear_about() -> None:
    alerts = _alerts()
    known = defined_metrics()
    used = used_metrics([str(r["expr"]) for r in alerts.values()])
    assert used <= known, used - known
    # backlog age, DLQ growth, breaker open, success rate, worker down (and Redis down)
    wanted = {"rsn_backlog_age_seconds": "ReturnNotifyBacklogOld",
              "rsn_delivery_states": "ReturnNotifyDeadLettersGrowing",
              "rsn_provider_breaker_open": "ReturnNotifyProviderBreakerOpen",
              "rsn_deliveries": "ReturnNotifyDeliverySuccessLow",
              "rsn_broker_up": "ReturnNotifyBrokerDown"}
    for metric, alert in wanted.items():
        assert metric in used_metrics([str(alerts[alert]["expr"])]), alert
    assert 'up{job="return-notify-workers"}' in str(alerts["ReturnNotifyWorkerDown"]["expr"])
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("page", "warn"), name  # type: ignore[index]
        assert {"summary", "description"} <= set(rule["annotations"]), name  # type: ignore[arg-type]


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (.ci/run installs Debian's prometheus package)")
    proc = subprocess.run([promtool, *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_promtool_accepts_the_configuration_and_the_rules() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "8 rules found" in _promtool("check", "rules", "alerts.yml")


def test_promtool_runs_the_alert_rules_unit_tests() -> None:
    # deploy/alerts.test.yml: each alert fires on the series it is for, with its text
    out = _promtool("test", "rules", "alerts.test.yml")
    assert "SUCCESS" in out
    tested = set(re.findall(r"alertname: (\w+)", (DEPLOY / "alerts.test.yml").read_text()))
    assert tested == set(_alerts())
