"""Tenant templates through the admin API and the CLI, on real PostgreSQL: save, validate,
list, history, roll back and preview, with scopes and variants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from return_notify.storage.db import session_scope
from tests.integration.templating.overrides_helpers import (  # noqa: F401 - an autouse fixture
    fresh_template_cache,
    new_tenant,
    q,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def client(svc: Any) -> Iterator[TestClient]:
    from return_notify.api.app import create_app

    with TestClient(create_app()) as c:
        yield c


def api_tenant() -> tuple[int, str, dict[str, str], dict[str, str]]:
    """A tenant, its owner principal's auth header and its tenant (ingest) key's header."""
    from return_notify.access.principals import create_principal, operator
    from return_notify.access.tenant_keys import issue_api_key

    tid, slug = new_tenant()
    with session_scope() as s:
        tenant_key = issue_api_key(s, tid, "test")
        _, owner_key = create_principal(s, operator(tid, slug, "test"), "owner", "owner")
    return (tid, slug, {"Authorization": f"Bearer {owner_key}"},
            {"Authorization": f"Bearer {tenant_key}"})


def test_admin_api(client: TestClient) -> None:
    _, slug, auth, tenant_auth = api_tenant()
    assert client.get("/v1/admin/branding").status_code == 401
    # the admin API takes principal keys (rsnp_…): a tenant ingest key is refused
    refused = client.get("/v1/admin/branding", headers=tenant_auth)
    assert refused.status_code == 401 and "principal key" in refused.json()["detail"]
    r = client.put("/v1/admin/branding", headers=auth, json={"brand_color": "red"})
    assert r.status_code == 422
    r = client.put("/v1/admin/branding", headers=auth,
                   json={"display_name": "Maison Claire", "tone": "formal", "default_locale": "fr_fr"})
    assert r.status_code == 200 and r.json()["default_locale"] == "fr-FR"
    assert client.get("/v1/admin/branding", headers=auth).json()["display_name"] == "Maison Claire"

    key = {"channel": "sms", "milestone": "refund_processed", "part": "text", "locale": "fr"}
    bad = client.post("/v1/admin/templates", headers=auth,
                      json={**key, "source": "{{ return_id|attr('__class__') }} {{ cta_url }}"})
    assert bad.status_code == 422 and "the 'attr' filter is not allowed" in bad.text
    check = client.post("/v1/admin/templates/validate", headers=auth,
                        json={**key, "source": "{{ return_id }}"}).json()
    assert check["ok"] is False and "call-to-action" in check["problems"][0]
    for n in (1, 2):
        r = client.post("/v1/admin/templates", headers=auth,
                        json={**key, "source": f"v{n} {{{{ tenant.name }}}} {{{{ return_id }}}} "
                                               "{{ cta_url }}", "note": f"n{n}"})
        assert r.status_code == 201 and r.json()["version"] == n
    listed = client.get("/v1/admin/templates", headers=auth).json()
    assert [(o["version"], o["active"]) for o in listed] == [(2, True)]
    hist = client.get("/v1/admin/templates/history", headers=auth, params=key).json()
    assert [h["version"] for h in hist] == [2, 1]
    assert client.post("/v1/admin/templates/rollback", headers=auth,
                       json={**key, "version": 1}).json() == {"active_version": 1}
    assert client.post("/v1/admin/templates/rollback", headers=auth,
                       json={**key, "version": 9}).status_code == 404

    pv = client.post("/v1/admin/templates/preview", headers=auth,
                     json={"channel": "sms", "milestone": "refund_processed", "locale": "fr-FR"})
    assert pv.status_code == 200 and pv.json()["text"].startswith("v1 Maison Claire RMA-100042")
    draft = client.post("/v1/admin/templates/preview", headers=auth, json={
        "channel": "email", "milestone": "return_approved", "locale": "fr-FR",
        "drafts": {"subject": "Brouillon {{ return_id }}"}}).json()
    assert draft["subject"] == "Brouillon RMA-100042" and "Cordialement," in draft["text"]
    hostile = client.post("/v1/admin/templates/preview", headers=auth, json={
        "channel": "sms", "milestone": "refund_processed",
        "drafts": {"text": "{{ cycler.__init__.__globals__ }}"}})
    assert hostile.status_code == 422 and "not allowed" in hostile.text

    # test sends go to verified test recipients only: a code proves the address
    def send_to(to: str) -> Any:
        return client.post("/v1/admin/templates/test-send", headers=auth, json={
            "channel": "email", "milestone": "refund_processed", "locale": "fr-FR", "to": to})

    assert send_to("qa@maison.example").status_code == 409
    asked = client.post("/v1/admin/test-recipients", headers=auth,
                        json={"channel": "email", "address": "QA@Maison.example"})
    assert asked.status_code == 202 and asked.json()["verified"] is False
    code_mail = q("SELECT body FROM sandbox_messages WHERE recipient = 'qa@maison.example' "
                  "ORDER BY id DESC LIMIT 1")[0][0]
    code = code_mail.split()[0]
    wrong = "000000" if code != "000000" else "111111"
    assert client.post("/v1/admin/test-recipients/verify", headers=auth, json={
        "channel": "email", "address": "QA@maison.example", "code": wrong}).status_code == 422
    ok = client.post("/v1/admin/test-recipients/verify", headers=auth, json={
        "channel": "email", "address": "QA@maison.example", "code": code})
    assert ok.status_code == 200 and ok.json()["verified"] is True
    ts = send_to("QA@maison.example")
    assert ts.status_code == 202 and ts.json()["to"] == "Q***@maison.example"  # as typed
    row = q("SELECT subject, recipient FROM sandbox_messages WHERE provider_message_id = :p",
            p=ts.json()["provider_message_id"])
    assert row[0][0].startswith("[TEST] ") and row[0][1] == "qa@maison.example"
    assert client.post("/v1/admin/templates/test-send", headers=auth, json={
        "channel": "sms", "milestone": "refund_processed", "to": "not-a-number"}).status_code == 422

    # another tenant sees none of it
    _, _, other, _ = api_tenant()
    assert client.get("/v1/admin/templates", headers=other).json() == []
    assert client.get("/v1/admin/branding", headers=other).json()["display_name"] is None


def verify(slug: str, channel: str, address: str) -> None:
    """Make ``address`` a verified test recipient of tenant ``slug`` (as an operator)."""
    from return_notify.policy.verified_recipients import add_verified
    from return_notify.storage.db import session_scope
    from return_notify.storage.tenants import find_tenant_id

    with session_scope() as s:
        add_verified(s, int(find_tenant_id(s, slug) or 0), channel, address, "test")


@pytest.fixture
def cli(svc: Any) -> typer.Typer:
    from return_notify.cli.templates import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)
    return app


def run(app: typer.Typer, *args: str, code: int = 0, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), input=stdin)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args and code == 0 else result


def test_cli(cli: typer.Typer, tmp_path: Any) -> None:
    _, slug = new_tenant()
    key = ["--tenant", slug, "--channel", "sms", "--milestone", "refund_processed",
           "--part", "text", "--locale", "de"]
    source = tmp_path / "sms.j2"
    source.write_text("{{ tenant.name }}: Geld zurück für {{ return_id }}: {{ cta_url }}")
    out = run(cli, "templates", "set", str(source), *key, "--note", "first", "--json")
    assert out["version"] == 1 and out["active"] and out["created_by"].startswith("cli:")
    bad = run(cli, "templates", "set", "-", *key, code=2, stdin="{{ lipsum() }}")
    assert "'lipsum' is not available" in bad.output
    run(cli, "templates", "set", "-", *key, "--json", stdin="v2 {{ return_id }} {{ cta_url }}")
    assert [o["version"] for o in run(cli, "templates", "list", "--tenant", slug, "--json")] == [2]
    hist = run(cli, "templates", "history", *key, "--json")
    assert [h["version"] for h in hist] == [2, 1] and hist[1]["note"] == "first"
    assert run(cli, "templates", "rollback", *key, "--version", "1", "--json")["active_version"] == 1
    brand = run(cli, "templates", "branding", "--tenant", slug, "--brand-color", "#123456",
                "--tone", "formal", "--json")
    assert brand["brand_color"] == "#123456" and brand["tone"] == "formal"
    run(cli, "templates", "branding", "--tenant", slug, "--brand-color", "blue", code=2)
    refused = run(cli, "templates", "test-send", "--tenant", slug, "--milestone",
                  "refund_processed", "--channel", "sms", "--to", "+14155550123", code=1)
    assert "not a verified test recipient" in " ".join(refused.output.split())
    verify(slug, "sms", "+14155550123")
    sent_out = run(cli, "templates", "test-send", "--tenant", slug, "--milestone",
                   "refund_processed", "--channel", "sms", "--locale", "de-AT", "--to",
                   "+14155550123", "--json")
    body = q("SELECT body FROM sandbox_messages WHERE provider_message_id = :p",
             p=sent_out["provider_message_id"])[0][0]
    assert body.startswith("[TEST] ") and "Geld zurück für RMA-100042" in body
    # `templates preview --tenant` reads the tenant's overrides when a database is configured
    from return_notify.cli.main import app as main_app

    shown = CliRunner().invoke(main_app, ["templates", "preview", "--tenant", slug, "--milestone",
                                          "refund_processed", "--channel", "sms", "--locale",
                                          "de-AT", "--json"])
    assert shown.exit_code == 0, shown.output
    assert "Geld zurück für RMA-100042" in json.loads(shown.stdout)["text"]


def test_cli_scope_and_variant(cli: typer.Typer) -> None:
    # given an EU override of the eu_formal variant and an ANY default one, set from the CLI
    tid, slug = new_tenant()
    key = ["--tenant", slug, "--channel", "sms", "--milestone", "refund_processed",
           "--part", "text"]
    eu = [*key, "--region", "eu", "--variant", "eu_formal"]
    out = run(cli, "templates", "set", "-", *eu, "--json",
              stdin="EU formal {{ return_id }} {{ cta_url }}")
    assert (out["region"], out["category"], out["variant"], out["version"]) == (
        "EU", None, "eu_formal", 1)
    run(cli, "templates", "set", "-", *key, "--json", stdin="Plain {{ return_id }} {{ cta_url }}")
    run(cli, "templates", "set", "-", *eu, "--json",
        stdin="EU formal v2 {{ return_id }} {{ cta_url }}")
    # then listings filter by scope and variant, history and rollback address one scope
    listed = run(cli, "templates", "list", "--tenant", slug, "--region", "EU", "--json")
    assert [(o["variant"], o["version"]) for o in listed] == [("eu_formal", 2)]
    assert [o["region"] for o in run(cli, "templates", "list", "--tenant", slug, "--variant",
                                     "default", "--json")] == [None]
    assert len(run(cli, "templates", "list", "--tenant", slug, "--json")) == 2
    assert [h["version"] for h in run(cli, "templates", "history", *eu, "--json")] == [2, 1]
    assert [h["version"] for h in run(cli, "templates", "history", *key, "--json")] == [1]
    assert run(cli, "templates", "rollback", *eu, "--version", "1", "--json")[
        "active_version"] == 1
    # and test-send / preview render as a delivery of that scope and variant would
    verify(slug, "sms", "+14155550123")
    sent_out = run(cli, "templates", "test-send", "--tenant", slug, "--milestone",
                   "refund_processed", "--channel", "sms", "--to", "+14155550123",
                   "--region", "EU-DE", "--variant", "eu_formal", "--json")
    body = q("SELECT body FROM sandbox_messages WHERE provider_message_id = :p",
             p=sent_out["provider_message_id"])[0][0]
    assert body.startswith("[TEST] EU formal RMA-100042")
    from return_notify.cli.main import app as main_app

    def preview(*extra: str) -> str:
        shown = CliRunner().invoke(main_app, ["templates", "preview", "--tenant", slug,
                                              "--milestone", "refund_processed", "--channel",
                                              "sms", "--json", *extra])
        assert shown.exit_code == 0, shown.output
        return str(json.loads(shown.stdout)["text"])

    assert preview("--region", "EU-FR", "--variant", "eu_formal").startswith("EU formal RMA")
    assert preview("--region", "US", "--variant", "eu_formal").startswith("Plain RMA")
    assert preview("--region", "EU-FR").startswith("Plain RMA")
    # bad input is a clear error, exit code 2
    bad = run(cli, "templates", "set", "-", *key, "--variant", "Not Valid", code=2,
              stdin="x {{ return_id }} {{ cta_url }}")
    assert "variant" in bad.output
    assert "region" in run(cli, "templates", "list", "--tenant", slug, "--region", "E U",
                           code=2).output
    # every change is audited with the CLI user and the override's scope
    actions = q("SELECT action, actor, region FROM audit_log WHERE tenant_id = :t "
                "AND resource = 'templates' ORDER BY id", t=tid)
    assert [(a, r) for a, _, r in actions] == [
        ("template.create", "EU"), ("template.create", None), ("template.create", "EU"),
        ("template.rollback", "EU")]
    assert all(actor.startswith("cli:") for _, actor, _ in actions)
    run(cli, "templates", "branding", "--tenant", slug, "--tone", "formal", "--json")
    assert q("SELECT action FROM audit_log WHERE tenant_id = :t AND resource = 'branding'",
             t=tid) == [("branding.update",)]
