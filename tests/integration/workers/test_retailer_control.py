"""Retailer control end to end: what a retailer configures over HTTP changes what a real
Celery worker process actually sends, on real PostgreSQL and Redis.

Each test configures a fresh tenant through the API (customer preferences with the
tenant key; quiet hours, the throttle and rules with principal keys), publishes events
with ``return_notify.producer.publish`` and asserts on the delivery rows and on the
sandbox provider's ``sandbox_messages`` (what the providers received). The sweeper runs
as the worker's own ``return_notify.sweep`` task, sent the way beat sends it.

A rule per region (EU vs US channels) through the workers is covered by
``rules/test_rules_in_pipeline.py::test_rule_per_region_through_celery_workers``.

Quiet hours depend on the wall clock: each recipient gets the fixed-offset zone that puts
*now* at the local hour a test needs (``zone_at``). The worker runs with quiet hours on
(the suite's default is off), no default throttle (tenants configure their own) and
policy/preference caches off, so a change made here reaches it at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from return_notify.devtools.processes import Proc, start_worker
from return_notify.producer import publish
from return_notify.storage.db import session_scope
from tests.helpers import event, later, uid, wait_until, zone_at
from tests.integration.api_helpers import make_tenant

pytestmark = pytest.mark.integration

WORKER_ENV = {
    "RSN_QUIET_HOURS_ENABLED": "true", "RSN_QUIET_HOURS_ALLOWED": "08:00-21:00",
    "RSN_THROTTLE_MIN_INTERVALS": "", "RSN_DIGEST_WINDOWS": "",
    "RSN_POLICY_CACHE_S": "0", "RSN_PREFERENCES_CACHE_S": "0",
    "RSN_MAX_ATTEMPTS": "3", "RSN_BACKOFF_BASE_S": "0.2", "RSN_BACKOFF_MAX_S": "0.5",
}


@pytest.fixture(scope="module")
def worker(services: Any, tmp_path_factory: Any) -> Iterator[Proc]:
    proc = start_worker(services.env(**WORKER_ENV), concurrency=2,
                        logdir=str(tmp_path_factory.mktemp("logs")))
    yield proc
    proc.stop(20)


@pytest.fixture
def api(svc: Any) -> Iterator[TestClient]:
    from return_notify.api.app import create_app

    with TestClient(create_app()) as client:
        yield client


@dataclass
class Retailer:
    """A fresh tenant with its ingest key and two principal keys (owner, EU manager)."""

    tenant_id: int
    slug: str
    tenant_key: str
    owner_key: str
    eu_key: str

    def call(self, api: TestClient, key: str, method: str, path: str, body: Any = None) -> Any:
        r = api.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


@pytest.fixture
def retailer(svc: Any) -> Retailer:
    from return_notify.access.principals import create_principal, operator

    tid, slug, tenant_key = make_tenant()
    with session_scope() as s:
        op = operator(tid, slug, "test")
        _, owner = create_principal(s, op, "owner", "owner")
        _, eu = create_principal(s, op, "eu-ops", "regional_manager", ["EU"])
    return Retailer(tid, slug, tenant_key, owner, eu)


def customer_event(milestone: str, retailer: Retailer, *, customer: str = "cust-1",
                   zone: str | None = None, **kw: Any) -> dict[str, Any]:
    # addresses of their own: never on a suppression list another test wrote
    kw.setdefault("email", f"{uid('c-')}@example.com")
    kw.setdefault("phone", f"+1415555{uuid.uuid4().int % 10_000:04d}")
    ev = event(milestone, tenant=retailer.slug, **kw)
    ev["customer"]["id"] = customer
    ev["customer"]["timezone"] = zone or zone_at(12)  # noon: no quiet hours unless asked
    return ev


def q(sql: str, **params: Any) -> list[Any]:
    with session_scope() as s:
        return list(s.execute(text(sql), params).all())


def deliveries(return_id: str) -> list[dict[str, Any]]:
    with session_scope() as s:
        return [dict(r) for r in s.execute(text(
            "SELECT d.id, d.milestone, d.channel, d.state, d.skip_reason, d.next_attempt_at, "
            "d.sent_at, d.attempts FROM deliveries d JOIN returns r ON r.id = d.return_pk "
            "WHERE r.return_id = :r ORDER BY d.id"), {"r": return_id}).mappings()]


def states(return_id: str) -> dict[str, str]:
    """channel → state (the last delivery of each channel)."""
    return {d["channel"]: d["state"] for d in deliveries(return_id)}


def settled(return_id: str, n: int) -> dict[str, str] | None:
    st = states(return_id)
    if len(deliveries(return_id)) == n and all(
            s not in ("pending", "sending", "retrying") for s in st.values()):
        return st
    return None


def provider_got(return_id: str) -> list[str]:
    """Channels of every message the sandbox email/SMS provider received for a return."""
    return [r[0] for r in q(
        "SELECT s.channel FROM sandbox_messages s JOIN deliveries d ON d.id = s.delivery_id "
        "JOIN returns r ON r.id = d.return_pk WHERE r.return_id = :r ORDER BY s.id",
        r=return_id)]


def run_sweeper() -> None:
    """What beat does every RSN_SWEEP_INTERVAL_S: the worker runs the sweep task."""
    from return_notify.config.celery import SWEEP_TASK
    from return_notify.workers.app import app

    app.send_task(SWEEP_TASK)


# ------------------------------------------------------------------ a. preferences --------

def test_customer_sms_opt_out_stops_the_sms_but_not_the_email(
        api: TestClient, retailer: Retailer, worker: Proc) -> None:
    # given a customer who switched SMS off (the retailer's backend, tenant key)
    retailer.call(api, retailer.tenant_key, "PUT", "/v1/customers/cust-no-sms/preferences",
                  {"channels": {"sms": False}})
    opted_out = customer_event("label_created", retailer, customer="cust-no-sms")
    other = customer_event("label_created", retailer, customer="cust-other")
    # when both customers get a label, through the producer and the worker
    publish(opted_out)
    publish(other)
    # then the opted-out one gets email and in-app, never an SMS, and the row says why
    st = wait_until(lambda: settled(opted_out["return_id"], 3), what="opted-out settled")
    assert st == {"email": "sent", "sms": "skipped", "inapp": "sent"}
    sms = next(d for d in deliveries(opted_out["return_id"]) if d["channel"] == "sms")
    assert (sms["skip_reason"], sms["attempts"]) == ("preference:opted_out", 0)
    assert provider_got(opted_out["return_id"]) == ["email"]
    # while a customer without preferences gets the SMS too
    wait_until(lambda: settled(other["return_id"], 3), what="other customer settled")
    assert sorted(provider_got(other["return_id"])) == ["email", "sms"]


# ------------------------------------------------------------------ b. quiet hours --------

def test_quiet_hours_hold_the_sms_until_the_window_opens_and_the_sweeper_sends_it(
        api: TestClient, retailer: Retailer, worker: Proc) -> None:
    # given the EU manager's quiet hours for EU (allowed 09:00-20:00, recipient's time) and
    # a recipient in EU-DE for whom it is 3 in the morning
    retailer.call(api, retailer.eu_key, "PUT", "/v1/quiet-hours/EU",
                  {"allowed": "09:00-20:00"})
    zone = zone_at(3)
    ev = customer_event("label_created", retailer, zone=zone, region="EU-DE")
    rid = ev["return_id"]
    # when the label is published
    publish(ev)
    # then the email goes now; SMS and in-app are scheduled for 09:00 local in PostgreSQL
    wait_until(lambda: states(rid) == {"email": "sent", "sms": "scheduled",
                                       "inapp": "scheduled"}, what="email sent, rest held")
    assert provider_got(rid) == ["email"]
    held = {d["channel"]: d for d in deliveries(rid) if d["state"] == "scheduled"}
    for d in held.values():
        local = d["next_attempt_at"].astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute, d["skip_reason"]) == (9, 0, "quiet_hours")
        assert timedelta(0) < d["next_attempt_at"] - datetime.now(UTC) <= timedelta(hours=7)
    # when the window opens (the manager allows the whole day in EU-DE) and the hold is due
    retailer.call(api, retailer.eu_key, "PUT", "/v1/quiet-hours/EU-DE",
                  {"allowed": "00:00-24:00"})
    with session_scope() as s:
        s.execute(text("UPDATE deliveries SET next_attempt_at = now() - interval '1 second' "
                       "WHERE id = ANY(:ids)"), {"ids": [d["id"] for d in held.values()]})
    run_sweeper()
    # then the sweeper's messages send them, once each
    wait_until(lambda: states(rid) == {"email": "sent", "sms": "sent", "inapp": "sent"},
               what="held SMS and in-app sent by the sweeper")
    assert sorted(provider_got(rid)) == ["email", "sms"]
    sms = next(d for d in deliveries(rid) if d["channel"] == "sms")
    assert (sms["skip_reason"], sms["attempts"]) == (None, 1)


def test_quiet_hours_still_hold_a_due_sms_while_it_is_night(
        api: TestClient, retailer: Retailer, worker: Proc) -> None:
    # given an SMS held by the tenant default quiet hours (owner: 08:00-21:00)
    retailer.call(api, retailer.owner_key, "PUT", "/v1/quiet-hours/default",
                  {"allowed": "08:00-21:00", "channels": ["sms"]})
    ev = customer_event("refund_processed", retailer, zone=zone_at(2), region="US",
                        data={"refund_amount": "12.00", "currency": "USD"})
    rid = ev["return_id"]
    publish(ev)
    wait_until(lambda: states(rid) == {"email": "sent", "sms": "scheduled", "inapp": "sent"},
               what="only the SMS held")
    first_hold = next(d for d in deliveries(rid) if d["channel"] == "sms")["next_attempt_at"]
    # when it is swept while it is still night where the recipient is
    with session_scope() as s:
        s.execute(text("UPDATE deliveries d SET next_attempt_at = now() - interval '1 second' "
                       "FROM returns r WHERE r.id = d.return_pk AND r.return_id = :r "
                       "AND d.channel = 'sms'"), {"r": rid})
    run_sweeper()
    # then the worker's send-time check holds it again until 08:00, and nothing is sent
    wait_until(lambda: (d := next(x for x in deliveries(rid) if x["channel"] == "sms"))
               ["state"] == "scheduled" and d["next_attempt_at"] == first_hold,
               what="SMS held again at send time")
    assert provider_got(rid) == ["email"]


# ------------------------------------------------------------------ c. throttle -----------

def test_two_eta_updates_within_the_interval_send_one_sms(
        api: TestClient, retailer: Retailer, worker: Proc) -> None:
    # given the owner's throttle: at most one in-transit SMS per return every 6 hours
    view = retailer.call(api, retailer.owner_key, "PUT", "/v1/throttle",
                         {"min_interval_s": {"in_transit:sms": "6h"}})
    assert view["effective"]["min_interval_s"]["in_transit:sms"] == 21600
    rid = uid("RMA-")
    # when two ETA updates of one return arrive a few seconds apart
    publish(customer_event("in_transit", retailer, return_id=rid, at=later(-30),
                           data={"eta": "2027-01-10"}))
    wait_until(lambda: settled(rid, 2), what="first ETA update settled")
    publish(customer_event("in_transit", retailer, return_id=rid, at=later(-20),
                           data={"eta": "2027-03-10"}))
    wait_until(lambda: len(deliveries(rid)) == 4 and settled(rid, 4), what="second settled")
    # then one SMS went out; the second waits out the interval; in-app got both
    rows = deliveries(rid)
    sms = [d for d in rows if d["channel"] == "sms"]
    assert [d["state"] for d in sms] == ["sent", "scheduled"]
    assert sms[1]["skip_reason"] == "throttle"
    gap = sms[1]["next_attempt_at"] - sms[0]["sent_at"]
    assert timedelta(hours=6) - timedelta(seconds=5) < gap <= timedelta(hours=6, seconds=5)
    assert [d["state"] for d in rows if d["channel"] == "inapp"] == ["sent", "sent"]
    assert provider_got(rid) == ["sms"]


# ------------------------------------------------------------------ d. override -----------

def test_a_transactional_override_rule_emails_despite_an_opt_out_never_an_unsubscribe(
        api: TestClient, retailer: Retailer, worker: Proc) -> None:
    from return_notify.policy.suppression import suppress

    # given a refund rule that overrides channel opt-outs (owner, admin API) ...
    rule = retailer.call(api, retailer.owner_key, "POST", "/v1/admin/rules", {
        "milestone": "refund_processed", "channels": ["email", "sms", "inapp"],
        "override_opt_out": True})
    assert rule["override_opt_out"] is True
    # ... two customers who opted out of email and SMS, one of whom also unsubscribed
    # the address and texted STOP (the suppression list)
    for customer in ("opted-out", "unsubscribed"):
        retailer.call(api, retailer.tenant_key, "PUT", f"/v1/customers/{customer}/preferences",
                      {"channels": {"email": False, "sms": False}})
    mail, phone = f"{uid('u-')}@example.com", "+14155550177"
    with session_scope() as s:
        suppress(s, retailer.tenant_id, "email", mail, "unsubscribe", source="test")
        suppress(s, retailer.tenant_id, "sms", phone, "stop", source="test")
    data = {"refund_amount": "49.90", "currency": "USD", "refund_method": "card"}
    # when both get a refund
    a = customer_event("refund_processed", retailer, customer="opted-out", data=data)
    b = customer_event("refund_processed", retailer, customer="unsubscribed", data=data,
                       email=mail, phone=phone)
    publish(a)
    publish(b)
    # then the opted-out customer still gets the email and SMS: the refund overrides
    assert wait_until(lambda: settled(a["return_id"], 3), what="override settled") == {
        "email": "sent", "sms": "sent", "inapp": "sent"}
    assert sorted(provider_got(a["return_id"])) == ["email", "sms"]
    # but the unsubscribed address and the STOPped number get nothing
    assert wait_until(lambda: settled(b["return_id"], 3), what="suppressed settled") == {
        "email": "suppressed", "sms": "suppressed", "inapp": "sent"}
    assert provider_got(b["return_id"]) == []


def test_without_the_override_the_opt_out_holds(api: TestClient, retailer: Retailer,
                                                worker: Proc) -> None:
    # given the same refund rule, but not overriding (the default)
    rule = retailer.call(api, retailer.owner_key, "POST", "/v1/admin/rules", {
        "milestone": "refund_processed", "channels": ["email", "sms", "inapp"]})
    assert rule["override_opt_out"] is False
    retailer.call(api, retailer.tenant_key, "PUT", "/v1/customers/opted-out/preferences",
                  {"channels": {"email": False}})
    ev = customer_event("refund_processed", retailer, customer="opted-out",
                        data={"refund_amount": "5.00", "currency": "USD"})
    publish(ev)
    # then the customer's email opt-out is respected
    assert wait_until(lambda: settled(ev["return_id"], 3), what="settled") == {
        "email": "skipped", "sms": "sent", "inapp": "sent"}
    assert provider_got(ev["return_id"]) == ["sms"]
