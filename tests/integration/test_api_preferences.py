"""HTTP and CLI for preferences, quiet hours and throttles, on real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.integration.api_fixtures import PUBLIC_BASE_URL, ApiEnv, api_env, make_tenant  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def production_defaults(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Quiet hours on and the 6 h ETA-SMS interval, whatever the suite's environment says."""
    from return_notify.planning import reset_policy_settings

    monkeypatch.setenv("RSN_QUIET_HOURS_ENABLED", "true")
    monkeypatch.setenv("RSN_THROTTLE_MIN_INTERVALS", "in_transit:sms=6h")
    monkeypatch.setenv("RSN_DIGEST_WINDOWS", "")
    reset_policy_settings()
    yield
    monkeypatch.undo()
    reset_policy_settings()


@pytest.fixture
def api(api_env: ApiEnv) -> Iterator[TestClient]:  # noqa: F811
    from return_notify.api import preferences
    from return_notify.api.app import create_app

    app = create_app()
    if not any(getattr(r, "path", "") == "/v1/throttle" for r in app.routes):
        app.include_router(preferences.router)  # until app.py includes it
    with TestClient(app, base_url=PUBLIC_BASE_URL) as c:
        yield c


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_preferences_round_trip_and_tenant_isolation(api: TestClient) -> None:
    _, _, key = make_tenant()
    _, _, other = make_tenant()
    url = "/v1/customers/c-42/preferences"
    assert api.get(url).status_code == 401
    got = api.get(url, headers=auth(key))
    assert got.status_code == 200 and got.json() == {
        "customer_id": "c-42", "stored": False,
        "preferences": {"channels": {}, "milestones": {}, "preferred_channel": None,
                        "locale": None, "timezone": None}}
    body = {"channels": {"sms": False}, "milestones": {"refund_processed": {"sms": True}},
            "preferred_channel": "email", "locale": "de-AT", "timezone": "Europe/Vienna"}
    put = api.put(url, json=body, headers=auth(key))
    assert put.status_code == 200, put.text
    got = api.get(url, headers=auth(key)).json()
    assert got["stored"] and got["preferences"] == body
    # another tenant's key sees its own (empty) customer c-42, never this one
    assert api.get(url, headers=auth(other)).json()["stored"] is False
    assert api.delete(url, headers=auth(key)).status_code == 204
    assert api.get(url, headers=auth(key)).json()["stored"] is False


@pytest.mark.parametrize("bad", [
    {"channels": {"fax": False}}, {"milestones": {"teleported": {"sms": False}}},
    {"preferred_channel": "pigeon"}, {"timezone": "Mars/Base"}, {"locale": "??"}, {"sms": False},
])
def test_invalid_preferences_are_422_with_the_field(api: TestClient, bad: dict[str, Any]) -> None:
    _, _, key = make_tenant()
    r = api.put("/v1/customers/c-1/preferences", json=bad, headers=auth(key))
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"][0] == "body"


def test_quiet_hours_per_region_with_legal_floor(api: TestClient) -> None:
    _, _, key = make_tenant()
    r = api.put("/v1/quiet-hours/default", json={"allowed": "07:00-22:00"}, headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["allowed"]["mon"] == "07:00-22:00" and r.json()["source"] == "tenant:*"
    # in Florida the legal floor still applies; a region of its own can say otherwise
    fl = api.get("/v1/quiet-hours", params={"region": "US-FL"}, headers=auth(key)).json()
    assert fl["effective"]["allowed"]["mon"] == "08:00-20:00"
    assert fl["legal_windows"]["US-TX"]["sun"] == "12:00-21:00"
    r = api.put("/v1/quiet-hours/us-tx", json={"allowed": "10:00-19:00", "days": {"sat": None},
                                                "channels": ["sms", "email"]}, headers=auth(key))
    assert r.status_code == 200
    assert r.json()["allowed"]["sat"] is None and r.json()["allowed"]["sun"] == "12:00-19:00"
    assert r.json()["channels"] == ["email", "sms"]
    listed = api.get("/v1/quiet-hours", headers=auth(key)).json()
    assert set(listed["configs"]) == {"*", "US-TX"}
    assert api.put("/v1/quiet-hours/EU", json={"allowed": "21:00-08:00"},
                   headers=auth(key)).status_code == 422
    assert api.delete("/v1/quiet-hours/US-TX", headers=auth(key)).status_code == 204
    assert api.delete("/v1/quiet-hours/US-TX", headers=auth(key)).status_code == 404


def test_throttle_overrides_merge_over_defaults(api: TestClient) -> None:
    _, _, key = make_tenant()
    got = api.get("/v1/throttle", headers=auth(key)).json()
    assert got["tenant"] is None and got["effective"]["min_interval_s"]["in_transit:sms"] == 21600
    r = api.put("/v1/throttle", json={"min_interval_s": {"*:sms": "10m"},
                                      "digest_window_s": {"email": "2m"}}, headers=auth(key))
    assert r.status_code == 200, r.text
    eff = r.json()["effective"]
    assert eff["min_interval_s"] == {"in_transit:sms": 21600, "*:sms": 600}
    assert eff["digest_window_s"] == {"email": 120}
    assert api.put("/v1/throttle", json={"min_interval_s": {"sms": 5}},
                   headers=auth(key)).status_code == 422
    assert api.delete("/v1/throttle", headers=auth(key)).status_code == 204
    assert api.get("/v1/throttle", headers=auth(key)).json()["tenant"] is None


@pytest.fixture
def cli(api_env: ApiEnv) -> typer.Typer:  # noqa: F811
    from return_notify.cli_prefs import register

    app = typer.Typer()
    app.command("noop")(lambda: None)  # a group needs two commands to keep its names
    register(app)
    return app


def run(app: typer.Typer, *args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_cli_preferences_quiet_hours_and_throttle(cli: typer.Typer) -> None:
    _, slug, _ = make_tenant()
    out = run(cli, "preferences", "set", "c-7", "--tenant", slug, "--channel", "sms=off",
              "--milestone", "refund_processed:sms=on", "--preferred", "email", "--json")
    assert out["preferences"] == {"channels": {"sms": False},
                                  "milestones": {"refund_processed": {"sms": True}},
                                  "preferred_channel": "email"}
    out = run(cli, "preferences", "set", "c-7", "--tenant", slug, "--locale", "fr", "--json")
    assert out["preferences"]["locale"] == "fr" and out["preferences"]["channels"] == {"sms": False}
    assert run(cli, "preferences", "get", "c-7", "--tenant", slug, "--json")["stored"] is True
    assert run(cli, "preferences", "clear", "c-7", "--tenant", slug, "--json")["removed"] is True

    out = run(cli, "quiet-hours", "set", "--tenant", slug, "--region", "US-TX", "--allowed",
              "09:30-20:00", "--day", "sat=closed", "--json")
    assert out["allowed"]["sat"] is None and out["allowed"]["sun"] == "12:00-20:00"
    out = run(cli, "quiet-hours", "get", "--tenant", slug, "--region", "US-TX", "--json")
    assert out["effective"]["allowed"]["mon"] == "09:30-20:00"

    out = run(cli, "throttle", "set", "--tenant", slug, "--interval", "*:sms=15m", "--digest",
              "sms=1m", "--json")
    assert out["effective"]["min_interval_s"]["*:sms"] == 900
    assert out["tenant"]["digest_window_s"] == {"sms": 60}

    bad = CliRunner().invoke(cli, ["preferences", "set", "c-7", "--tenant", slug, "--channel",
                                   "fax=off"])
    assert bad.exit_code == 1 and "fax" in bad.output
    missing = CliRunner().invoke(cli, ["preferences", "get", "c-7", "--tenant", "no-such-tenant"])
    assert missing.exit_code == 1
