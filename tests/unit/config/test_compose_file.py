"""docker-compose.yml is a valid Compose file an operator can run as it is: checked against the
Compose Specification's JSON Schema (vendored in deploy/schema/), with what the deployment
relies on: credentials from .env and required, warm stops, health checks everywhere, one
image, nothing published but the API, Prometheus finding every worker replica."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from return_notify.config.settings import Settings
from tests.helpers import REPO_ROOT

COMPOSE = REPO_ROOT / "docker-compose.yml"
SCHEMA = REPO_ROOT / "deploy" / "schema" / "compose-spec.json"
#: what .env.example tells the operator to set
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret",
           "RSN_FLOWER_BASIC_AUTH": "ops:flower-secret"}

def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` (a default may itself
    hold a variable, read only when the default is used); ``$$`` is a ``$``."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _variable(text, i + 2, env)
            out.append(value)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _variable(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    """The value of the variable whose name starts at ``i``, and the index after its ``}``."""
    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(:?[-?])?").match(text, i)
    assert m, text[i:i + 40]
    name, op = m.group(0).rstrip(":-?"), m.group(1) or ""
    depth, j = 1, m.end()
    while depth:  # the argument, up to the matching brace
        depth += {"{": 1, "}": -1}.get(text[j], 0) if text[j - 1] == "$" or text[j] == "}" else 0
        j += 1
    arg = text[m.end():j - 1]
    value = env.get(name)
    unset = value is None or (value == "" and op.startswith(":"))
    if op.endswith("?") and unset:
        raise LookupError(f"{name}: {interpolate(arg, env)}")
    if op.endswith("-") and unset:
        return interpolate(arg, env), j
    return value or "", j


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    raw = COMPOSE.read_text()
    return yaml.safe_load(interpolate(raw, env if env is not None else SECRETS))


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _workers(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in c["services"].items() if (s.get("command") or [None])[0] == "worker"}


def _seconds(duration: str) -> float:
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u]
               for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration))


# ------------------------------------------------------------------ the specification ---

def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    from jsonschema import Draft7Validator

    schema = json.loads(SCHEMA.read_text())
    validator = Draft7Validator(schema)
    # as written (placeholders are strings), and as compose sees it with .env filled in
    for document in (yaml.safe_load(COMPOSE.read_text()), compose()):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_the_schema_check_catches_a_mistake() -> None:
    from jsonschema import Draft7Validator

    broken = compose()
    broken["services"]["api"]["stop_grace_period"] = {"seconds": 10}  # not a duration
    broken["services"]["beat"]["helthcheck"] = {}  # a typo: unknown key
    errors = list(Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(broken))
    assert len(errors) >= 2


# ------------------------------------------------------------------ credentials ---------

@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    with pytest.raises(LookupError, match=missing):
        compose({k: v for k, v in SECRETS.items() if k != missing})


def test_credentials_come_from_env_and_env_file_is_optional() -> None:
    raw = COMPOSE.read_text()
    c = compose()
    assert "rsn:rsn" not in raw and "change-me" not in raw
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in raw
    assert _env(c["services"]["postgres"])["POSTGRES_PASSWORD"] == "pg-secret"
    for name, svc in c["services"].items():
        env_files = svc.get("env_file")
        if env_files is not None:  # every app service may read .env, none needs it
            assert env_files == [{"path": ".env", "required": False}], name
    api = _env(c["services"]["api"])
    assert api["RSN_DATABASE_URL"] == "postgresql://rsn:pg-secret@postgres:5432/return_notify"
    assert api["RSN_BROKER_URL"] == "redis://:redis-secret@redis:6379/0"
    # Flower's own variable works too
    flower_only = {k: v for k, v in SECRETS.items() if k != "RSN_FLOWER_BASIC_AUTH"}
    c = compose({**flower_only, "FLOWER_BASIC_AUTH": "ops:pw"})
    assert _env(c["services"]["flower"])["RSN_FLOWER_BASIC_AUTH"] == "ops:pw"


def test_env_example_names_every_secret_with_no_value() -> None:
    lines = dict(line.split("=", 1) for line in (REPO_ROOT / ".env.example").read_text()
                 .splitlines() if line and not line.startswith("#"))
    for name in SECRETS:
        assert lines.get(name) == "", name  # present, and no default password
    known = {f"RSN_{f.upper()}" for f in Settings.model_fields}
    named = set(re.findall(r"\b(RSN_[A-Z0-9_]+)=", (REPO_ROOT / ".env.example").read_text()))
    assert named - {"RSN_IMAGE", "RSN_API_PORT"} <= known, named - known


def test_compose_settings_are_ones_the_code_reads() -> None:
    known = {f"RSN_{f.upper()}" for f in Settings.model_fields} | {"RSN_READY_FILE"}
    used = {k for s in compose()["services"].values() for k in _env(s) if k.startswith("RSN_")}
    assert used and used <= known, used - known


# ------------------------------------------------------------------ running -------------

def test_every_worker_and_the_listener_stop_warm_within_their_grace_period() -> None:
    c = compose()
    hard_limit = Settings(_env_file=None).task_time_limit_s  # type: ignore[call-arg]
    warm = {**_workers(c), "stream-listener": c["services"]["stream-listener"]}
    assert {"worker-events", "worker-email", "worker-sms", "worker-inapp",
            "worker-maintenance", "worker-retention"} <= set(warm)
    for name, svc in warm.items():
        assert _seconds(svc["stop_grace_period"]) > hard_limit, name
        assert svc.get("stop_signal", "SIGTERM") == "SIGTERM", name


def test_every_service_has_a_health_check() -> None:
    c = compose()
    for name, svc in c["services"].items():
        if name == "migrate":  # a one-shot: its exit status is its health
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name
    # workers are asked over the broker under their own node name
    for name, svc in _workers(c).items():
        node = svc["command"][svc["command"].index("-n") + 1]
        check = svc["healthcheck"]["test"][1]
        assert "inspect ping" in check and f"-d {node.replace('%h', '$HOSTNAME')}" in check, name
    # PostgreSQL over TCP: during first-boot initialisation only its socket answers
    pg = c["services"]["postgres"]["healthcheck"]["test"]
    assert pg[pg.index("-h") + 1] == "127.0.0.1"


def test_migrations_wait_for_postgresql_and_are_retried() -> None:
    c = compose()
    migrate = c["services"]["migrate"]
    assert migrate["command"][:2] == ["db", "upgrade"] and "--wait" in migrate["command"]
    assert migrate["restart"].startswith("on-failure")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, svc in c["services"].items():
        if svc.get("image") == migrate["image"] and name != "migrate":
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_one_image_built_once_for_every_app_service() -> None:
    c = compose()
    built = [n for n, s in c["services"].items() if "build" in s]
    assert built == ["migrate"]
    image = c["services"]["migrate"]["image"]
    apps = [n for n, s in c["services"].items() if s.get("image") == image]
    assert set(apps) >= {"api", "beat", "flower", "stream-listener", *_workers(c)}


def test_beat_is_one_with_its_schedule_on_a_volume() -> None:
    c = compose()
    beat = c["services"]["beat"]
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    mounts = dict(v.split(":", 1) for v in beat["volumes"])
    volume = next(v for v, path in mounts.items() if schedule.startswith(path.rstrip("/") + "/"))
    assert volume in c["volumes"]
    assert "deploy" not in beat  # no replicas


def test_compose_flower_keeps_its_state_on_a_named_volume() -> None:
    c = compose()
    flower = c["services"]["flower"]
    cmd = flower["command"]
    assert cmd[0] == "flower" and "--persistent" in cmd and "--no-persistent" not in cmd
    db = cmd[cmd.index("--db") + 1]
    mounts = dict(v.split(":", 1) for v in flower["volumes"])
    volume = next(v for v, path in mounts.items() if db.startswith(path.rstrip("/") + "/"))
    assert volume in c["volumes"]


# ------------------------------------------------------------------ exposure ------------

def test_only_the_api_is_published_beyond_this_machine() -> None:
    c = compose()
    for name, svc in c["services"].items():
        for port in svc.get("ports", []):
            public = not str(port).startswith("127.0.0.1:")
            assert not public or name == "api", f"{name} publishes {port}"
            assert not str(port).endswith(":9808"), name  # metrics: never published
    assert c["networks"]["backend"]["internal"] is True
    for name in ("redis", "postgres"):
        assert c["services"][name]["networks"] == ["backend"], name


def test_workers_and_the_api_serve_metrics_where_prometheus_finds_them() -> None:
    c = compose()
    prom = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    sd = [d for d in jobs["return-notify-workers"]["dns_sd_configs"]]
    names = {n for d in sd for n in d["names"]}
    assert names == set(_workers(c)) and {d["port"] for d in sd} == {9808}
    for name, svc in _workers(c).items():
        env = _env(svc)
        assert env["RSN_METRICS_PORT"] == "9808" and env["RSN_METRICS_ADDRESS"] == "0.0.0.0"
        assert "9808" in [str(p) for p in svc.get("expose", [])], name
    api = c["services"]["api"]
    (api_sd,) = jobs["return-notify-api"]["dns_sd_configs"]
    assert api_sd["names"] == ["api"] and str(api_sd["port"]) == _env(api)["RSN_API_METRICS_PORT"]
    assert "9808" in [str(p) for p in api.get("expose", [])]


def test_monitoring_runs_under_its_profile_with_the_rules_and_the_dashboard() -> None:
    c = compose()
    prometheus, grafana = c["services"]["prometheus"], c["services"]["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    mounted = {v.split(":")[0] for v in prometheus["volumes"] + grafana["volumes"]}
    for path in ("./deploy/prometheus.yml", "./deploy/alerts.yml",
                 "./deploy/grafana/return-notify.json", "./deploy/grafana/provisioning"):
        assert path in mounted and (REPO_ROOT / path).exists(), path
    for name in ("redis", "postgres", "prometheus", "grafana"):
        image = c["services"][name]["image"]
        assert re.search(r":v?\d+\.\d+(\.\d+)?(-[a-z]+)?$", image), image  # an exact version


# ------------------------------------------------------------------ the image -----------

def test_the_image_installs_from_the_hashed_lock_and_runs_as_a_numeric_user() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim-\w+", dockerfile)
    assert "pip install --require-hashes --no-deps -r /tmp/requirements-docker.lock" in dockerfile
    assert "--no-build-isolation" in dockerfile  # the build backend comes from the lock too
    assert re.search(r"^USER \d+:\d+$", dockerfile, re.M)
    lock = (REPO_ROOT / "requirements-docker.lock").read_text()
    pinned = re.findall(r"^([a-z0-9._-]+)==", lock, re.M)
    assert {"celery", "fastapi", "uvicorn", "setuptools"} <= set(pinned)
    assert not {"pytest", "ruff", "mypy", "schemathesis"} & set(pinned)  # runtime only
    assert lock.count("--hash=sha256:") >= len(pinned)
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") + 1:] and "!.env" not in ignored and "*" in ignored
