"""docker-compose.yml stays in step with the code: workers serve metrics where Prometheus scrapes
them, every ``RSN_*`` variable is a setting the code reads, Flower keeps its state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import REPO_ROOT


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_workers_serve_metrics_where_prometheus_scrapes_them() -> None:
    # given
    yaml = pytest.importorskip("yaml")
    services = _compose()["services"]
    workers = {n: s for n, s in services.items() if s.get("command", [None])[0] == "worker"}
    prom = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for j in prom["scrape_configs"] if j["job_name"] == "return-notify-workers"
               for sc in j["static_configs"] for t in sc["targets"]}
    # then: each worker binds its endpoint on all interfaces (a container), on the scraped
    # port, reachable by other containers only (published ports would clash on --scale)
    assert {"worker-events", "worker-email", "worker-sms", "worker-inapp"} <= set(workers)
    for name, svc in workers.items():
        env = _env(svc)
        assert env["RSN_METRICS_PORT"] == "9808" and env["RSN_METRICS_ADDRESS"] == "0.0.0.0", name
        assert "9808" in [str(p) for p in svc.get("expose", [])] and not svc.get("ports"), name
        assert env["RSN_BROKER_URL"].startswith("redis://redis:"), name
    assert targets == {f"{name}:9808" for name in workers}


def test_compose_settings_are_ones_the_code_reads() -> None:
    from return_notify.config.settings import Settings

    known = {f"RSN_{f.upper()}" for f in Settings.model_fields}
    used = {k for s in _compose()["services"].values() for k in _env(s) if k.startswith("RSN_")}
    assert used and used <= known, used - known


def test_compose_flower_keeps_its_state_on_a_named_volume() -> None:
    compose = _compose()
    flower = compose["services"]["flower"]
    cmd = flower["command"]
    assert cmd[0] == "flower" and "--persistent" in cmd and "--no-persistent" not in cmd
    db = cmd[cmd.index("--db") + 1]
    mounts = dict(v.split(":", 1) for v in flower["volumes"])  # volume: path in the container
    volume = next(v for v, path in mounts.items() if db.startswith(path.rstrip("/") + "/"))
    assert volume in compose["volumes"]  # a named volume, not the container's own layer
    assert _env(flower).get("RSN_FLOWER_BASIC_AUTH")  # never without credentials
