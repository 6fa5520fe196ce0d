"""Tenant templates end to end on real PostgreSQL: versioned overrides (save, validate,
roll back) change what the pipeline sends; hostile ones stored by hand fail the delivery
with a reason; branding and localisation reach the messages; admin API and CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import IngestResult, ingest_batch
from return_notify.storage.db import get_engine, session_scope
from return_notify.templating.branding import BrandingUpdate, save_branding
from return_notify.templating.store import forget_tenant_templates
from return_notify.templating.validation import OverrideKey
from return_notify.templating.versions import (
    OverrideRejected,
    list_overrides,
    override_history,
    rollback_override,
    save_override,
)
from tests.helpers import event, uid

pytestmark = pytest.mark.integration

SMS = OverrideKey("sms", "refund_processed", "text", "en")
CUSTOM = "{{ tenant.name }} custom v{{ 1 + 0 }}: {{ return_id }} refunded. {{ cta_url }}"


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def new_tenant(name: str | None = None) -> tuple[int, str]:
    from return_notify.access.tenant_keys import create_tenant

    slug = uid("t-")
    with session_scope() as s:
        tid, _ = create_tenant(s, slug, name)
    return tid, slug


def send(events: list[dict[str, Any]]) -> IngestResult:
    with session_scope() as s:
        result = ingest_batch(s, events)
    settings = Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    for ch, ids in result.deliveries.items():
        deliver_batch(session_scope, ch, ids, SandboxChannel(ch, engine=get_engine()), settings)
    return result


def sent(return_id: str) -> dict[str, dict[str, Any]]:
    """What the sandbox provider received for a return, by channel."""
    rows = q("SELECT s.channel, s.subject, s.body, s.html FROM sandbox_messages s "
             "JOIN deliveries d ON d.id = s.delivery_id JOIN returns r ON r.id = d.return_pk "
             "WHERE r.return_id = :r", r=return_id)
    return {ch: {"subject": su, "body": b, "html": h} for ch, su, b, h in rows}


def deliveries(return_id: str) -> dict[str, tuple[str, str | None]]:
    rows = q("SELECT d.channel, d.state, d.last_error FROM deliveries d JOIN returns r "
             "ON r.id = d.return_pk WHERE r.return_id = :r", r=return_id)
    return {ch: (st, err) for ch, st, err in rows}


def refund(slug: str, **customer: Any) -> dict[str, Any]:
    ev = event("refund_processed", tenant=slug, data={
        "refund_amount": "49.90", "currency": "EUR", "refund_method": "store_credit"})
    ev["customer"].update(customer)
    return ev


@pytest.fixture(autouse=True)
def _fresh_cache(svc: Any) -> Iterator[None]:
    forget_tenant_templates()
    yield
    forget_tenant_templates()


# --------------------------------------------------------------------------- versions


def test_save_validate_version_and_roll_back(svc: Any) -> None:
    tid, _ = new_tenant()
    with session_scope() as s:
        v1, _ = save_override(s, tid, SMS, CUSTOM, actor="test", note="first")
        v2, _ = save_override(s, tid, SMS, CUSTOM.replace("custom", "second"), actor="test")
    assert (v1.version, v2.version) == (1, 2) and v2.active
    with session_scope() as s, pytest.raises(OverrideRejected) as info:
        save_override(s, tid, SMS, "{{ customer.name|safe }} {{ return_id }} {{ cta_url }}")
    assert "the 'safe' filter is not allowed" in info.value.result.problems[0]
    with session_scope() as s:
        history = override_history(s, tid, SMS)
        assert [(h.version, h.active) for h in history] == [(2, True), (1, False)]
        assert history[1].note == "first" and history[1].created_by == "test"
        assert rollback_override(s, tid, SMS, 1) is not None
        assert [o.version for o in list_overrides(s, tid)] == [1]
        with pytest.raises(LookupError):
            rollback_override(s, tid, SMS, 7)
        assert rollback_override(s, tid, SMS, 0) is None
        assert list_overrides(s, tid) == []
        assert len(list_overrides(s, tid, include_inactive=True)) == 2
    # one active version per key, enforced by the database too
    with pytest.raises(Exception, match="uq_template_overrides_active"), session_scope() as s:
        s.execute(text("UPDATE template_overrides SET active = true WHERE tenant_id = :t"),
                  {"t": tid})


def test_an_override_changes_what_the_pipeline_sends_and_rollback_restores(svc: Any) -> None:
    tid, slug = new_tenant("Acme Outfitters")
    with session_scope() as s:
        save_override(s, tid, SMS, CUSTOM)
    ev = refund(slug)
    send([ev])
    got = sent(ev["return_id"])
    assert got["sms"]["body"] == (f"Acme Outfitters custom v1: {ev['return_id']} refunded. "
                                  f"http://127.0.0.1:8000/r/{slug}/{ev['return_id']}")
    assert "refunded" in (got["email"]["subject"] or "")  # other channels keep the defaults
    # roll back to the packaged template: the next message is the default again
    with session_scope() as s:
        rollback_override(s, tid, SMS, 0)
    ev2 = refund(slug)
    send([ev2])
    assert "custom" not in sent(ev2["return_id"])["sms"]["body"]
    assert "We've refunded" in sent(ev2["return_id"])["sms"]["body"]


def test_override_for_every_milestone_and_per_locale(svc: Any) -> None:
    tid, slug = new_tenant()
    with session_scope() as s:
        save_override(s, tid, OverrideKey("inapp", "*", "title", "de"), "Neu: {{ milestone }}")
    de = event("return_approved", tenant=slug)
    de["customer"]["locale"] = "de-AT"
    en = event("return_approved", tenant=slug)
    send([de, en])
    assert sent(de["return_id"])["inapp"]["subject"] == "Neu: return_approved"
    assert sent(en["return_id"])["inapp"]["subject"] == "Return approved"


@pytest.mark.parametrize(("source", "reason"), [
    ("{{ ''.__class__.__mro__ }} {{ return_id }} {{ cta_url }}", "override rejected"),
    ("{{ customer.name|safe }} {{ return_id }} {{ cta_url }}", "the 'safe' filter is not allowed"),
    ("{% for i in range(9999) %}{% for j in range(9999) %}{% endfor %}{% endfor %}"
     "{{ return_id }} {{ cta_url }}", "render limit exceeded"),
    ("{{ customer.email }} {{ return_id }} {{ cta_url }}", "undefined variable"),
], ids=["class_walk", "safe_filter", "nested_loops", "undefined"])
def test_hostile_override_written_to_the_database_fails_the_delivery(svc: Any, source: str,
                                                                      reason: str) -> None:
    # given a hostile template stored by hand, past every validation
    tid, slug = new_tenant()
    with session_scope() as s:
        s.execute(text("INSERT INTO template_overrides (tenant_id, channel, milestone, part, "
                       "locale, version, source, active) VALUES (:t, 'sms', 'refund_processed', "
                       "'text', 'en', 1, :src, true)"), {"t": tid, "src": source})
    # when its event is delivered
    ev = refund(slug)
    result = send([ev])
    # then the SMS fails permanently with the reason recorded; nothing hangs; email is sent
    state = deliveries(ev["return_id"])
    assert state["sms"][0] == "failed" and reason in (state["sms"][1] or ""), state["sms"]
    assert state["email"][0] == "sent"
    attempts = q("SELECT outcome, error_class, error_message FROM delivery_attempts "
                 "WHERE delivery_id = :d", d=result.deliveries["sms"][0])
    assert attempts[0][:2] == ("permanent", "TemplateRenderError") and reason in attempts[0][2]
    assert "sms" not in sent(ev["return_id"])


def test_workers_see_a_change_on_their_next_batch(svc: Any) -> None:
    from return_notify.templating.store import load_tenant_templates

    tid, _ = new_tenant()
    with session_scope() as s:
        first = load_tenant_templates(s, [tid])[tid]
        assert load_tenant_templates(s, [tid])[tid] is first  # cached: one small query
    # another process saves an override: the revision moves, the next batch reloads
    with session_scope() as s:
        save_override(s, tid, SMS, CUSTOM)
    with session_scope() as s:
        again = load_tenant_templates(s, [tid])[tid]
    assert again is not first and again.revision > first.revision
    assert again.overrides.find("sms", "refund_processed", "text", "en") == CUSTOM


# --------------------------------------------------------------------------- branding, i18n


def test_branding_reaches_every_message(svc: Any) -> None:
    tid, slug = new_tenant("acme")
    with session_scope() as s:
        save_branding(s, tid, BrandingUpdate(
            display_name="Acme Outfitters", logo_url="https://cdn.acme.example/logo.png",
            brand_color="#0b3d2e", accent_color="#ffd700", support_url="https://acme.example/help",
            support_email="help@acme.example", sender_name="Acme Returns", tone="formal",
            default_locale="fr-FR", timezone="Europe/Paris"))
    ev = event("label_created", tenant=slug, data={"label_url": "https://l.example/x.pdf"})
    pt = event("label_created", tenant=slug, data={"label_url": "https://l.example/y.pdf"})
    pt["customer"]["locale"] = "pt-BR"  # no Portuguese templates: the tenant default, French
    send([ev, pt])
    email = sent(ev["return_id"])["email"]
    html = email["html"] or ""
    assert 'src="https://cdn.acme.example/logo.png"' in html and 'alt="Acme Outfitters"' in html
    assert "border-top:4px solid #0b3d2e" in html and "background-color:#ffd700" in html
    assert 'href="https://acme.example/help"' in html and "mailto:help@acme.example" in html
    assert email["body"].startswith("Dear Ana,") and "Kind regards,\nAcme Outfitters" in email["body"]
    assert "Acme Outfitters:" in sent(ev["return_id"])["sms"]["body"]
    french = sent(pt["return_id"])["email"]
    assert french["subject"] == f"Votre étiquette de retour pour {pt['return_id']} est prête"
    assert french["body"].startswith("Bonjour Ana,") and "Cordialement," in french["body"]


@pytest.mark.parametrize(("locale", "subject", "amount"), [
    ("es-ES", "Te hemos reembolsado 49,90 € por tu devolución", "49,90 €"),
    ("fr-FR", "Nous vous avons remboursé 49,90 € pour votre retour", "49,90 €"),
    ("de-DE", "Wir haben Ihnen 49,90 € für Ihre Rücksendung", "49,90 €"),
    ("de-AT", "Wir haben Ihnen € 49,90 für Ihre Rücksendung", "€ 49,90"),
    ("en-GB", "We've refunded €49.90 for your return", "€49.90"),
])
def test_events_are_told_in_the_customer_language(svc: Any, locale: str, subject: str,
                                                  amount: str) -> None:
    _, slug = new_tenant()
    ev = refund(slug, locale=locale, timezone="Europe/Madrid")
    send([ev])
    got = sent(ev["return_id"])
    norm = {ch: {k: (v or "").replace("\xa0", " ").replace("\u202f", " ") for k, v in m.items()}
            for ch, m in got.items()}
    assert norm["email"]["subject"].startswith(subject), norm["email"]["subject"]
    assert amount in norm["sms"]["body"] and amount in norm["inapp"]["body"]
    assert "\xa0" not in got["sms"]["body"] and "\u202f" not in got["sms"]["body"]


def test_dates_use_the_customer_timezone(svc: Any) -> None:
    _, slug = new_tenant()
    ev = event("in_transit", tenant=slug, data={"eta": "2030-03-04T23:30:00+00:00",
                                               "carrier": "dhl"})
    ev["customer"].update(locale="de-DE", timezone="Europe/Berlin")
    send([ev])
    assert "Di., 5. März" in sent(ev["return_id"])["sms"]["body"]  # 00:30 on the 5th in Berlin


# --------------------------------------------------------------------------- API and CLI


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
