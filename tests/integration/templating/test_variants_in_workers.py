"""A rule's template variant and region-scoped overrides change what is actually sent: ingest
stores the rule's template on each delivery, deliver renders with the override of that
variant and the event's scope (in-process, then through real Celery worker processes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.access.principals import operator
from return_notify.rules.store import RuleSpec, create_rule
from return_notify.storage.db import get_engine, session_scope
from return_notify.templating.scope import TemplateScope
from return_notify.templating.validation import OverrideKey
from return_notify.templating.versions import rollback_override, save_override
from tests.helpers import event, uid, wait_until
from tests.integration.api_helpers import ApiEnv, make_tenant

pytestmark = pytest.mark.integration

DATA = {"refund_amount": "49.90", "currency": "EUR", "refund_method": "card"}
SMS = OverrideKey("sms", "refund_processed", "text", "en")
SUBJECT = OverrideKey("email", "refund_processed", "subject", "en")
EU_FORMAL = TemplateScope("EU", None, "eu_formal")
FORMAL_SMS = "EU formal notice: refund for {{ return_id }} issued. Details: {{ cta_url }}"
FORMAL_SUBJECT = "EU formal notice: your refund for {{ return_id }}"


def setup_tenant() -> tuple[int, str]:
    """A tenant whose EU rule names ``eu_formal`` and with EU ``eu_formal`` overrides of the
    refund SMS and email subject (plus decoys no delivery here may pick)."""
    tid, slug, _ = make_tenant()
    with session_scope() as s:
        actor = operator(tid, slug, "test").actor
        create_rule(s, tid, RuleSpec.build("refund_processed", ["email", "sms"], region="EU",
                                           template="eu_formal"), actor)
        create_rule(s, tid, RuleSpec.build("refund_processed", ["email", "sms"], region="US"),
                    actor)
        save_override(s, tid, SMS, FORMAL_SMS, actor, scope=EU_FORMAL)
        save_override(s, tid, SUBJECT, FORMAL_SUBJECT, actor, scope=EU_FORMAL)
        # decoys: the variant in another region, and the default variant in the US only
        save_override(s, tid, SMS, "JP formal {{ return_id }} {{ cta_url }}", actor,
                      scope=TemplateScope("JP", None, "eu_formal"))
        save_override(s, tid, SUBJECT, "US plain {{ return_id }}", actor,
                      scope=TemplateScope("US-CA"))
    return tid, slug


def messages(return_id: str) -> dict[str, dict[str, Any]]:
    """What the sandbox provider received and the delivery rows say, by channel."""
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT d.channel, d.state, d.template, d.subject AS d_subject, d.body AS d_body, "
            "m.subject, m.body FROM deliveries d JOIN returns r ON r.id = d.return_pk "
            "LEFT JOIN sandbox_messages m ON m.delivery_id = d.id WHERE r.return_id = :r"),
            {"r": return_id}).mappings().all()
    return {r["channel"]: dict(r) for r in rows}


def assert_eu_formal(got: dict[str, dict[str, Any]], return_id: str) -> None:
    assert {ch: m["state"] for ch, m in got.items()} == {"email": "sent", "sms": "sent"}
    assert {m["template"] for m in got.values()} == {"eu_formal"}
    assert got["sms"]["body"].startswith(f"EU formal notice: refund for {return_id} issued.")
    assert got["sms"]["d_body"] == got["sms"]["body"]
    assert got["email"]["subject"] == f"EU formal notice: your refund for {return_id}"
    assert got["email"]["d_subject"] == got["email"]["subject"]


def assert_default(got: dict[str, dict[str, Any]]) -> None:
    assert {ch: m["state"] for ch, m in got.items()} == {"email": "sent", "sms": "sent"}
    assert {m["template"] for m in got.values()} == {None}
    assert "formal" not in got["sms"]["body"] and "We've refunded" in got["sms"]["body"]
    assert "formal" not in got["email"]["subject"] and "refunded" in got["email"]["subject"]


def test_rule_variant_and_region_pick_the_override_in_process(api_env: ApiEnv) -> None:
    from return_notify.channels.sandbox import SandboxChannel
    from return_notify.config.settings import Settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    # given
    _, slug = setup_tenant()
    eu = event("refund_processed", tenant=slug, region="EU-DE", data=DATA)
    us = event("refund_processed", tenant=slug, region="US", data=DATA)
    # when
    with session_scope() as s:
        result = ingest_batch(s, [eu, us])
    settings = Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    for ch, ids in result.deliveries.items():
        deliver_batch(session_scope, ch, ids, SandboxChannel(ch, engine=get_engine()), settings)
    # then
    assert_eu_formal(messages(eu["return_id"]), eu["return_id"])
    assert_default(messages(us["return_id"]))


def test_a_variant_without_overrides_falls_back_to_the_default(api_env: ApiEnv) -> None:
    from return_notify.channels.sandbox import SandboxChannel
    from return_notify.config.settings import Settings
    from return_notify.pipeline.deliver import deliver_batch
    from return_notify.pipeline.ingest import ingest_batch

    # given an EU rule naming a variant nobody wrote, and an EU default-variant SMS override
    tid, slug, _ = make_tenant()
    with session_scope() as s:
        actor = operator(tid, slug, "test").actor
        create_rule(s, tid, RuleSpec.build("refund_processed", ["sms"], region="EU",
                                           template="holiday"), actor)
        save_override(s, tid, SMS, "EU default {{ return_id }} {{ cta_url }}", actor,
                      scope=TemplateScope("EU"))
    fr = event("refund_processed", tenant=slug, region="EU-FR", data=DATA)
    # when
    with session_scope() as s:
        result = ingest_batch(s, [fr])
    deliver_batch(session_scope, "sms", result.deliveries["sms"],
                  SandboxChannel("sms", engine=get_engine()),
                  Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05))
    # then the delivery remembers the rule's template, and renders the EU default override
    got = messages(fr["return_id"])["sms"]
    assert (got["state"], got["template"]) == ("sent", "holiday")
    assert got["body"].startswith(f"EU default {fr['return_id']}")


@pytest.fixture(scope="module")
def worker(api_env: ApiEnv, tmp_path_factory: Any) -> Iterator[Any]:
    from return_notify.devtools.processes import start_worker

    proc = start_worker(api_env.env(RSN_INAPP_PROVIDER="sandbox"), concurrency=2,
                        logdir=str(tmp_path_factory.mktemp("logs")))
    yield proc
    proc.stop(20)


def test_rule_variant_per_region_through_celery_workers(api_env: ApiEnv, worker: Any) -> None:
    from return_notify.producer import publish_many

    # given an EU rule naming eu_formal and EU overrides of that variant
    tid, slug = setup_tenant()
    eu = event("refund_processed", tenant=slug, region="EU-DE", data=DATA)
    us = event("refund_processed", tenant=slug, region="US", data=DATA)
    # when a US and an EU event are published to the worker
    publish_many([eu, us])
    # then the EU customer gets the EU formal variant, the US one the default
    wait_until(lambda: len(messages(eu["return_id"])) == 2
               and all(m["body"] for m in messages(eu["return_id"]).values())
               and len(messages(us["return_id"])) == 2
               and all(m["body"] for m in messages(us["return_id"]).values()),
               timeout_s=60, what="both customers' email and SMS sent")
    assert_eu_formal(messages(eu["return_id"]), eu["return_id"])
    assert_default(messages(us["return_id"]))
    # and rolling the variant's SMS back reaches the worker on its next batch: the EU SMS
    # falls back to the default (no EU default-variant SMS), the email keeps the variant
    with session_scope() as s:
        rollback_override(s, tid, SMS, 0, EU_FORMAL, operator(tid, slug, "test").actor)
    fr = event("refund_processed", tenant=slug, region="EU-FR", return_id=uid("RMA-"), data=DATA)
    publish_many([fr])
    wait_until(lambda: len(messages(fr["return_id"])) == 2
               and all(m["body"] for m in messages(fr["return_id"]).values()),
               timeout_s=60, what="the EU-FR customer's email and SMS sent")
    got = messages(fr["return_id"])
    assert "We've refunded" in got["sms"]["body"] and "formal" not in got["sms"]["body"]
    assert got["email"]["subject"] == f"EU formal notice: your refund for {fr['return_id']}"
