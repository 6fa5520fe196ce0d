"""``return-notify tenants create|list`` and ``inbox token`` on real PostgreSQL."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from tests.integration.api_helpers import INBOX_MASTER, ApiEnv, uid

pytestmark = pytest.mark.integration


def test_cli_tenants_create_list_and_inbox_token(api_env: ApiEnv) -> None:
    from return_notify.cli.tenants import register
    from return_notify.inbox import verify_inbox_token

    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    runner = CliRunner()
    slug = uid("cli-")
    created = runner.invoke(app, ["tenants", "create", slug, "--json"])
    assert created.exit_code == 0, created.output
    out = json.loads(created.output)
    assert out["created"] is True and out["api_key"].startswith("rsn_")
    listed = runner.invoke(app, ["tenants", "list", "--json"])
    row = next(r for r in json.loads(listed.output) if r["slug"] == slug)
    assert row["active_keys"] == 1 and out["api_key"] not in listed.output
    token = runner.invoke(app, ["inbox", "token", "--tenant", slug, "--customer", "c-9"])
    assert token.exit_code == 0
    assert verify_inbox_token(token.output.strip(), INBOX_MASTER).customer_id == "c-9"
    bad = runner.invoke(app, ["tenants", "create", "Not A Slug"])
    assert bad.exit_code == 1
