"""Tenant templates end to end on real PostgreSQL: versioned overrides (save, validate,
roll back) change what the pipeline sends; hostile ones stored by hand fail the delivery
with a reason; branding and localisation reach the messages. The admin API and CLI:
``test_overrides_admin.py``."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import IngestResult, ingest_batch
from return_notify.storage.db import get_engine, session_scope
from return_notify.templating.branding import BrandingUpdate, save_branding
from return_notify.templating.validation import OverrideKey
from return_notify.templating.versions import (
    OverrideRejected,
    list_overrides,
    override_history,
    rollback_override,
    save_override,
)
from tests.helpers import event
from tests.integration.templating.overrides_helpers import (  # noqa: F401 - an autouse fixture
    fresh_template_cache,
    new_tenant,
    q,
)

pytestmark = pytest.mark.integration

SMS = OverrideKey("sms", "refund_processed", "text", "en")
CUSTOM = "{{ tenant.name }} custom v{{ 1 + 0 }}: {{ return_id }} refunded. {{ cta_url }}"


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
