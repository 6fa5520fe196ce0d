"""``return-notify preferences|quiet-hours|throttle`` on real PostgreSQL: set, read and clear,
mistakes refused with exit 1, every configuration change audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.api_helpers import ApiEnv, audit, make_tenant

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("production_defaults")]


@pytest.fixture
def cli(api_env: ApiEnv) -> typer.Typer:
    from return_notify.cli.preferences import register

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
    bad = CliRunner().invoke(cli, ["quiet-hours", "set", "--tenant", slug, "--region", "US--TX"])
    assert bad.exit_code == 1 and "--region" in bad.output


def test_cli_quiet_hours_and_throttle_changes_are_audited(cli: typer.Typer) -> None:
    tid, slug, _ = make_tenant()
    run(cli, "quiet-hours", "set", "--tenant", slug, "--region", "eu_de", "--allowed",
        "09:00-20:00", "--json")
    run(cli, "quiet-hours", "set", "--tenant", slug, "--region", "EU-DE", "--allowed",
        "09:00-20:00", "--json")  # the same again: no change, no entry
    run(cli, "quiet-hours", "set", "--tenant", slug, "--region", "EU-DE", "--clear", "--json")
    run(cli, "throttle", "set", "--tenant", slug, "--interval", "*:sms=15m", "--json")
    run(cli, "throttle", "set", "--tenant", slug, "--clear", "--json")
    quiet, throttle = audit(tid, "quiet_hours"), audit(tid, "throttle")
    assert [(e["action"], e["resource_id"], e["region"]) for e in quiet] == [
        ("quiet_hours.create", "EU-DE", "EU-DE"), ("quiet_hours.delete", "EU-DE", "EU-DE")]
    assert [e["action"] for e in throttle] == ["throttle.create", "throttle.delete"]
    assert all(e["actor"].startswith("cli:") for e in quiet + throttle)
