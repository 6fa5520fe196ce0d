"""``return-notify rules|principals|audit`` on real PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.api_helpers import ApiEnv, make_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cli(api_env: ApiEnv) -> Any:
    from return_notify.cli.rules import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(app, list(args))
        assert (result.exit_code == 0) is ok, result.output
        return json.loads(result.stdout) if "--json" in args and ok else result.output

    return run


def test_rules_lifecycle_from_the_command_line(cli: Any) -> None:
    _, slug, _ = make_tenant()
    created = cli("rules", "create", "-t", slug, "--milestone", "in_transit", "--region", "eu",
                  "--channels", "email, inapp", "--urgency", "transactional", "--json")
    rid = created["id"]
    assert (created["region"], created["channels"], created["created_by"][:4]) == (
        "EU", ["email", "inapp"], "cli:")
    cli("rules", "create", "-t", slug, "--milestone", "in_transit", "--region", "EU",
        "--channels", "sms", ok=False)  # the scope already has a rule
    cli("rules", "create", "-t", slug, "--milestone", "in_transit", "--channels", "fax", ok=False)
    ex = cli("rules", "explain", "-t", slug, "--milestone", "in_transit", "--region", "EU-DE",
             "--json")
    assert ex["result"]["rule_id"] == rid and ex["result"]["channels"] == ["email", "inapp"]
    assert [c["outcome"] for c in ex["candidates"]] == ["won", "default_unused"]
    assert "rule " in cli("rules", "explain", "-t", slug, "--milestone", "in_transit",
                          "--region", "EU-DE")
    updated = cli("rules", "update", str(rid), "-t", slug, "--channels", "sms",
                  "--template", "friendly", "--urgency", "default", "--json")
    assert (updated["channels"], updated["template"], updated["urgency"], updated["version"]) == (
        ["sms"], "friendly", None, 2)
    assert cli("rules", "disable", str(rid), "-t", slug, "--json")["enabled"] is False
    listed = cli("rules", "list", "-t", slug, "--region", "EU", "--json")
    assert [r["id"] for r in listed] == [rid]
    assert "in_transit" in cli("rules", "list", "-t", slug)
    audit = cli("audit", "list", "-t", slug, "--resource", "rules", "--json")["entries"]
    assert [e["action"] for e in audit] == ["rule.disable", "rule.update", "rule.create"]
    assert audit[1]["before"]["channels"] == ["email", "inapp"]
    cli("rules", "delete", str(rid), "-t", slug, "--json")
    assert cli("rules", "list", "-t", slug, "--json") == []
    cli("rules", "list", "-t", "no-such-tenant", ok=False)


def test_override_opt_out_from_the_command_line(cli: Any) -> None:
    _, slug, _ = make_tenant()
    # given a transactional milestone (refund_processed): the flag is accepted and shown
    created = cli("rules", "create", "-t", slug, "--milestone", "refund_processed", "--region",
                  "US", "--channels", "email,sms", "--override-opt-out", "--json")
    rid = created["id"]
    assert created["override_opt_out"] is True
    assert "yes" in cli("rules", "list", "-t", slug).split("refund_processed")[1]
    ex = cli("rules", "explain", "-t", slug, "--milestone", "refund_processed", "--region",
             "US-CA", "--json")
    assert ex["result"]["override_opt_out"] is True
    assert ex["candidates"][0]["rule"]["override_opt_out"] is True
    text = cli("rules", "explain", "-t", slug, "--milestone", "refund_processed", "--region",
               "US-CA")
    assert "overrides opt-outs: yes" in text and "[overrides opt-outs]" in text
    # when the rule would stop being transactional: a clear error, nothing changes
    out = " ".join(cli("rules", "update", str(rid), "-t", slug, "--urgency", "informational",
                       ok=False).split())
    assert "only for transactional rules" in out and "its urgency is informational" in out
    # an informational milestone cannot carry the flag unless the rule makes it transactional
    out = " ".join(cli("rules", "create", "-t", slug, "--milestone", "in_transit",
                       "--channels", "sms", "--override-opt-out", ok=False).split())
    assert "in_transit is informational by default" in out
    made = cli("rules", "create", "-t", slug, "--milestone", "in_transit", "--channels", "sms",
               "--urgency", "transactional", "--override-opt-out", "--json")
    assert made["override_opt_out"] is True
    # and the flag is switched off and on again, each change audited with before and after
    off = cli("rules", "update", str(rid), "-t", slug, "--no-override-opt-out", "--json")
    assert (off["override_opt_out"], off["version"]) == (False, 2)
    assert not cli("rules", "explain", "-t", slug, "--milestone", "refund_processed",
                   "--region", "US", "--json")["result"]["override_opt_out"]
    assert cli("rules", "update", str(rid), "-t", slug, "--urgency", "informational",
               "--json")["urgency"] == "informational"
    audit = cli("audit", "list", "-t", slug, "--resource", "rules", "--resource-id", str(rid),
                "--json")["entries"]
    assert [e["action"] for e in audit] == ["rule.update", "rule.update", "rule.create"]
    assert (audit[1]["before"]["override_opt_out"], audit[1]["after"]["override_opt_out"]) == (
        True, False)


def test_principals_from_the_command_line(cli: Any, api_env: ApiEnv) -> None:
    from fastapi.testclient import TestClient

    from return_notify.api.app import create_app

    _, slug, _ = make_tenant()
    out = cli("principals", "create", "-t", slug, "--name", "eu-ops", "--role",
              "regional_manager", "--region", "EU", "--region", "uk", "--json")
    key = out["api_key"]
    assert key.startswith("rsnp_") and out["principal"]["regions"] == ["EU", "UK"]
    cli("principals", "create", "-t", slug, "--name", "x", "--role", "regional_manager",
        ok=False)  # a regional manager needs a region
    listed = cli("principals", "list", "-t", slug, "--json")
    assert [p["name"] for p in listed] == ["eu-ops"] and "api_key" not in listed[0]
    with TestClient(create_app()) as client:
        me = client.get("/v1/admin/me", headers={"Authorization": f"Bearer {key}"})
        assert me.json()["role"] == "regional_manager"
        prefix = key.split("_")[1]
        cli("principals", "revoke-key", "-t", slug, str(out["principal"]["id"]), prefix)
        me = client.get("/v1/admin/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 401
    audit = cli("audit", "list", "-t", slug, "--json")["entries"]
    assert [e["action"] for e in audit] == ["principal.key_revoke", "principal.key_issue",
                                            "principal.create"]
    assert key not in json.dumps(audit)
    assert "principal.create" in cli("audit", "list", "-t", slug)
