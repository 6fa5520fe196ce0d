"""Preferences, quiet hours, throttle and digest change what is actually sent: driven
through ``ingest_batch`` + ``deliver_batch`` (sandbox channel) on real PostgreSQL.

Quiet hours depend on the wall clock, so each test picks the recipient's time zone
(``Etc/GMT±N``) that puts *now* at the local hour it needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import IngestResult, ingest_batch
from return_notify.pipeline.maintenance import due_deliveries
from return_notify.storage.db import get_engine, session_scope
from tests.helpers import event, later, uid, zone_at

pytestmark = pytest.mark.integration


@pytest.fixture
def policies(svc: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Production defaults on: quiet hours 08-21 (sms, inapp), in_transit SMS every 6 h."""
    from return_notify.config.settings import reset_settings
    from return_notify.policy.planner import forget_policies
    from return_notify.policy.preferences import forget_preferences

    monkeypatch.setenv("RSN_QUIET_HOURS_ENABLED", "true")
    monkeypatch.setenv("RSN_THROTTLE_MIN_INTERVALS", "in_transit:sms=6h")
    monkeypatch.setenv("RSN_DIGEST_WINDOWS", "")
    for reset in (reset_settings, forget_policies, forget_preferences):
        reset()
    yield
    monkeypatch.undo()
    for reset in (reset_settings, forget_policies, forget_preferences):
        reset()


def tenant_id(slug: str) -> int:
    from return_notify.access.tenant_keys import create_tenant

    with session_scope() as s:
        return create_tenant(s, slug)[0]


def ev_at(milestone: str, tenant: str, rid: str, zone: str, region: str = "US",
          **kw: Any) -> dict[str, Any]:
    ev = event(milestone, tenant=tenant, return_id=rid, region=region, **kw)
    ev["customer"]["timezone"] = zone
    return ev


def ingest(events: list[Any]) -> IngestResult:
    with session_scope() as s:
        return ingest_batch(s, events)


def deliver(by_channel: dict[str, list[int]]) -> None:
    settings = Settings(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.05)
    for ch, ids in by_channel.items():
        if ids:
            deliver_batch(session_scope, ch, ids, SandboxChannel(ch, engine=get_engine()), settings)


def sweep_and_deliver() -> None:
    with session_scope() as s:
        due = due_deliveries(s, lease_s=300)
    deliver(due)


def make_due(rid: str) -> None:
    """Time passes: every held delivery of this return comes due."""
    with session_scope() as s:
        s.execute(text("UPDATE deliveries d SET next_attempt_at = now() - interval '1 second' "
                       "FROM returns r WHERE r.id = d.return_pk AND r.return_id = :r "
                       "AND d.state = 'scheduled'"), {"r": rid})


def rows(rid: str) -> list[dict[str, Any]]:
    with session_scope() as s:
        return [dict(r) for r in s.execute(text(
            "SELECT d.id, d.milestone, d.channel, d.state, d.skip_reason, d.next_attempt_at, "
            "d.attempts, d.locale, d.sent_at FROM deliveries d JOIN returns r "
            "ON r.id = d.return_pk WHERE r.return_id = :r ORDER BY d.id"), {"r": rid}).mappings()]


def sent(rid: str) -> list[tuple[str, str, str]]:
    """(channel, milestone, body) of every message the provider received for a return."""
    with session_scope() as s:
        return [tuple(r) for r in s.execute(text(  # type: ignore[misc]
            "SELECT s.channel, d.milestone, s.body FROM sandbox_messages s JOIN deliveries d "
            "ON d.id = s.delivery_id JOIN returns r ON r.id = d.return_pk "
            "WHERE r.return_id = :r ORDER BY s.id"), {"r": rid})]


def state_of(rid: str) -> dict[tuple[str, str], str]:
    return {(r["milestone"], r["channel"]): r["state"] for r in rows(rid)}


# ------------------------------------------------------------------ preferences -------

def test_sms_opt_out_stops_the_sms_and_is_recorded(policies: None) -> None:
    from return_notify.policy.preferences import Preferences, put_preferences

    # given a customer who switched SMS off
    slug, rid = uid("t-"), uid("RMA-")
    with session_scope() as s:
        put_preferences(s, tenant_id(slug), "cust-1", Preferences(channels={"sms": False}))
    # when a label is created (email, sms, in-app) at noon
    r = ingest([ev_at("label_created", slug, rid, zone_at(12))])
    deliver(r.deliveries)
    # then email and in-app go out, the SMS never does and says why
    assert sorted(c for c, _, _ in sent(rid)) == ["email", "inapp"]
    sms = next(x for x in rows(rid) if x["channel"] == "sms")
    assert (sms["state"], sms["skip_reason"]) == ("skipped", "preference:opted_out")
    assert r.preference_skipped == 1


def test_milestone_opt_out_preferred_channel_and_locale(policies: None) -> None:
    from return_notify.policy.preferences import Preferences, put_preferences

    slug = uid("t-")
    tid = tenant_id(slug)
    with session_scope() as s:
        put_preferences(s, tid, "cust-1", Preferences.model_validate({
            "milestones": {"refund_processed": {"inapp": False}}, "preferred_channel": "sms",
            "locale": "de-DE"}))
    rid = uid("RMA-")
    r = ingest([ev_at("refund_processed", slug, rid, zone_at(12),
                      data={"refund_amount": "10.00", "currency": "EUR"})])
    deliver(r.deliveries)
    # email dropped for the preferred SMS, in-app switched off for refunds
    assert [c for c, _, _ in sent(rid)] == ["sms"]
    assert {x["channel"]: x["locale"] for x in rows(rid)}["sms"] == "de-DE"
    assert "email" not in {x["channel"] for x in rows(rid)}  # preferred-channel: no row


def test_event_defaults_apply_until_the_customer_chooses(policies: None) -> None:
    from return_notify.policy.preferences import Preferences, put_preferences

    slug = uid("t-")
    defaults = {"preferences": {"channels": {"email": False}}}
    rid = uid("RMA-")
    deliver(ingest([ev_at("label_created", slug, rid, zone_at(12), data=defaults)]).deliveries)
    assert sorted(c for c, _, _ in sent(rid)) == ["inapp", "sms"]
    # the customer's stored choice beats the producer's default
    with session_scope() as s:
        put_preferences(s, tenant_id(slug), "cust-1", Preferences(channels={"email": True}))
    rid2 = uid("RMA-")
    deliver(ingest([ev_at("label_created", slug, rid2, zone_at(12), data=defaults)]).deliveries)
    assert sorted(c for c, _, _ in sent(rid2)) == ["email", "inapp", "sms"]


def test_transactional_override_beats_an_opt_out_but_never_stop_or_unsubscribe(
        policies: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from return_notify.pipeline import ingest as ingest_module
    from return_notify.policy.preferences import Preferences, put_preferences
    from return_notify.policy.suppression import suppress

    # given rules that let transactional milestones override channel opt-outs (what a
    # rule with override_opt_out says; patched where ingest asks, whatever the rule store)
    monkeypatch.setattr(ingest_module, "rule_overrides_opt_out",
                        lambda rule: rule.urgency == "transactional")
    slug = uid("t-")
    tid = tenant_id(slug)
    phone_stopped, mail_unsub = "+14155550142", f"{uid('u')}@example.com"
    with session_scope() as s:
        for cid in ("opted-out", "stopped"):
            put_preferences(s, tid, cid, Preferences(channels={"sms": False, "email": False}))
        suppress(s, tid, "sms", phone_stopped, "stop", source="test")
        suppress(s, tid, "email", mail_unsub, "unsubscribe", source="test")

    def refund(customer: str, **kw: Any) -> str:
        rid = uid("RMA-")
        ev = ev_at("refund_processed", slug, rid, zone_at(12), **kw)
        ev["customer"]["id"] = customer
        deliver(ingest([ev]).deliveries)
        return rid

    # when a customer who only opted out gets a refund: the override sends anyway
    rid = refund("opted-out", phone="+14155550143")
    assert sorted(c for c, _, _ in sent(rid)) == ["email", "inapp", "sms"]
    # but one who also texted STOP and unsubscribed gets neither SMS nor email
    rid = refund("stopped", phone=phone_stopped, email=mail_unsub)
    assert [c for c, _, _ in sent(rid)] == ["inapp"]
    st = state_of(rid)
    assert st[("refund_processed", "sms")] == "suppressed"
    assert st[("refund_processed", "email")] == "suppressed"


# ------------------------------------------------------------------ quiet hours -------

def test_quiet_hours_hold_sms_and_inapp_until_eight_but_not_email(policies: None) -> None:
    slug, rid = uid("t-"), uid("RMA-")
    zone = zone_at(3)
    r = ingest([ev_at("refund_processed", slug, rid, zone)])
    deliver(r.deliveries)
    assert [c for c, _, _ in sent(rid)] == ["email"]
    held = {x["channel"]: x for x in rows(rid) if x["state"] == "scheduled"}
    assert set(held) == {"sms", "inapp"} and r.scheduled == 2
    from zoneinfo import ZoneInfo

    for x in held.values():
        local = x["next_attempt_at"].astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute, x["skip_reason"]) == (8, 0, "quiet_hours")
        assert x["next_attempt_at"] - datetime.now(UTC) < timedelta(hours=6)
    # the sweeper does not touch them before they are due
    sweep_and_deliver()
    assert [c for c, _, _ in sent(rid)] == ["email"]


def test_florida_is_quiet_at_half_past_eight_pm_but_federal_us_is_not(policies: None) -> None:
    slug = uid("t-")
    zone = zone_at(20)
    fl, us = uid("RMA-"), uid("RMA-")
    r = ingest([ev_at("label_created", slug, fl, zone, region="US-FL"),
                ev_at("label_created", slug, us, zone, region="US")])
    deliver(r.deliveries)
    assert state_of(fl)[("label_created", "sms")] == "scheduled"
    assert state_of(us)[("label_created", "sms")] == "sent"


def test_held_sms_is_sent_by_the_sweeper_once_allowed(policies: None) -> None:
    from return_notify.policy.planner import put_quiet_hours
    from return_notify.policy.quiet_hours import QuietHoursConfig

    slug, rid = uid("t-"), uid("RMA-")
    ingest([ev_at("label_created", slug, rid, zone_at(3), region="EU-DE")])
    assert state_of(rid)[("label_created", "sms")] == "scheduled"
    # when the window opens (here: the tenant allows the whole day in EU-DE) and it is due
    with session_scope() as s:
        put_quiet_hours(s, tenant_id(slug), "EU-DE", QuietHoursConfig(allowed="00:00-24:00"))
    make_due(rid)
    sweep_and_deliver()
    # then the sweeper's message sends it, and the hold reason is gone
    sms = next(x for x in rows(rid) if x["channel"] == "sms")
    assert (sms["state"], sms["skip_reason"], sms["attempts"]) == ("sent", None, 1)


def test_a_send_that_reaches_quiet_hours_is_held_at_send_time(policies: None) -> None:
    from return_notify.policy.preferences import Preferences, forget_preferences, put_preferences

    # given an SMS planned at noon (pending) ...
    slug, rid = uid("t-"), uid("RMA-")
    r = ingest([ev_at("refund_processed", slug, rid, zone_at(12))])
    assert r.deliveries["sms"]
    # ... whose recipient turns out to be in the middle of the night when it is sent
    with session_scope() as s:
        put_preferences(s, tenant_id(slug), "cust-1", Preferences(timezone=zone_at(2)))
    forget_preferences()
    deliver({"sms": r.deliveries["sms"]})
    sms = next(x for x in rows(rid) if x["channel"] == "sms")
    assert (sms["state"], sms["skip_reason"], sms["attempts"]) == ("scheduled", "quiet_hours", 0)
    assert not [c for c, _, _ in sent(rid) if c == "sms"]


# ------------------------------------------------------------------ throttle / digest --

def test_eta_updates_send_at_most_one_sms_per_six_hours_about_the_latest(policies: None) -> None:
    slug, rid, zone = uid("t-"), uid("RMA-"), zone_at(12)
    # the first ETA goes out at once
    first = ingest([ev_at("in_transit", slug, rid, zone, at=later(-30),
                          data={"eta": "2027-01-10"})])
    deliver(first.deliveries)
    # two more ETA updates within the hour: the SMS waits for the interval, in-app does not
    for i, eta in enumerate(("2027-06-10", "2027-03-10")):
        r = ingest([ev_at("in_transit", slug, rid, zone, at=later(-20 + i * 10),
                          data={"eta": eta})])
        deliver(r.deliveries)
    sms = [x for x in rows(rid) if x["channel"] == "sms"]
    assert [x["state"] for x in sms] == ["sent", "skipped", "scheduled"]
    assert sms[1]["skip_reason"] == "superseded"
    assert sms[2]["skip_reason"] == "throttle"
    gap = sms[2]["next_attempt_at"] - sms[0]["sent_at"]
    assert timedelta(hours=6) - timedelta(seconds=5) < gap <= timedelta(hours=6, seconds=5)
    assert len([c for c, _, _ in sent(rid) if c == "inapp"]) == 3
    # when the six hours are over, one SMS with the newest ETA
    make_due(rid)
    sweep_and_deliver()
    texts = [body for c, _, body in sent(rid) if c == "sms"]
    assert len(texts) == 2
    # the newest ETA (March), never the one in between (June)
    assert "Jan" in texts[0] and "Mar" in texts[1] and not any("Jun" in t for t in texts)
    assert state_of(rid)[("in_transit", "sms")] == "sent"


def test_a_newer_milestone_skips_a_throttled_eta_sms(policies: None) -> None:
    slug, rid, zone = uid("t-"), uid("RMA-"), zone_at(12)
    deliver(ingest([ev_at("in_transit", slug, rid, zone, at=later(-30))]).deliveries)
    deliver(ingest([ev_at("in_transit", slug, rid, zone, at=later(-20))]).deliveries)
    r = ingest([ev_at("refund_processed", slug, rid, zone, at=later(-10))])
    deliver(r.deliveries)
    make_due(rid)
    sweep_and_deliver()
    assert [m for c, m, _ in sent(rid) if c == "sms"] == ["in_transit", "refund_processed"]


@pytest.fixture
def digest(policies: None) -> Iterator[str]:
    """A tenant with a 2-minute digest on every channel."""
    from return_notify.policy.planner import put_throttle
    from return_notify.policy.throttle import ThrottleConfig

    slug = uid("t-")
    with session_scope() as s:
        put_throttle(s, tenant_id(slug), ThrottleConfig.model_validate(
            {"digest_window_s": {"email": "2m", "sms": "2m", "inapp": "2m"}}))
    yield slug


def test_digest_three_milestones_become_one_message_about_the_latest(digest: str) -> None:
    rid, zone = uid("RMA-"), zone_at(12)
    # in separate batches within the window
    for i, m in enumerate(("return_initiated", "return_approved", "label_created")):
        r = ingest([ev_at(m, digest, rid, zone, at=later(-30 + i))])
        deliver(r.deliveries)  # nothing to send yet: all held
    assert sent(rid) == []
    held = [x for x in rows(rid) if x["state"] == "scheduled"]
    assert {x["milestone"] for x in held} == {"label_created"}
    # email and in-app joined the group the first milestone opened (SMS: label_created
    # is the first one with an SMS, so it opened its own group)
    due = {x["channel"]: x["next_attempt_at"] for x in held}
    assert due["email"] == due["inapp"] < due["sms"]
    make_due(rid)
    sweep_and_deliver()
    assert sorted((c, m) for c, m, _ in sent(rid)) == [
        ("email", "label_created"), ("inapp", "label_created"), ("sms", "label_created")]


def test_digest_within_one_batch_and_an_in_transit_group(digest: str) -> None:
    rid, zone = uid("RMA-"), zone_at(12)
    ingest([ev_at("shipment_dispatched", digest, rid, zone, at=later(-20)),
            ev_at("in_transit", digest, rid, zone, at=later(-10), data={"eta": "2026-12-04"})])
    make_due(rid)
    sweep_and_deliver()
    # the held in_transit is about the current state: not superseded by itself
    assert sorted((c, m) for c, m, _ in sent(rid)) == [("inapp", "in_transit"),
                                                       ("sms", "in_transit")]


def test_a_stale_digest_member_is_skipped_at_claim_time(digest: str) -> None:
    rid, zone = uid("RMA-"), zone_at(12)
    ingest([ev_at("return_approved", digest, rid, zone, at=later(-20))])
    # a newer milestone committed without ingest skipping the waiting one (its lock was
    # held by a deliver claim at that moment, say)
    with session_scope() as s:
        s.execute(text("UPDATE returns SET milestone = 'label_created', milestone_at = now() "
                       "WHERE return_id = :r"), {"r": rid})
    make_due(rid)
    sweep_and_deliver()
    assert sent(rid) == []
    assert {x["skip_reason"] for x in rows(rid)} == {"superseded"}


# ------------------------------------------------------------------ storage -----------

def test_batch_loaders_and_caches_on_postgres(policies: None) -> None:
    from return_notify.policy.planner import (
        get_quiet_hours,
        load_policies,
        put_quiet_hours,
        put_throttle,
    )
    from return_notify.policy.preferences import (
        Preferences,
        delete_preferences,
        get_preferences,
        load_preferences,
        put_preferences,
    )
    from return_notify.policy.quiet_hours import QuietHoursConfig
    from return_notify.policy.throttle import ThrottleConfig, load_histories

    tid = tenant_id(uid("t-"))
    with session_scope() as s:
        put_preferences(s, tid, "a", Preferences(channels={"sms": False}))
        put_preferences(s, tid, "b", Preferences(locale="fr"))
        put_preferences(s, tid, "a", Preferences(channels={"email": False}))  # replace
    with session_scope() as s:
        got = load_preferences(s, [(tid, "a"), (tid, "b"), (tid, "nobody")])
        assert got == {(tid, "a"): Preferences(channels={"email": False}),
                       (tid, "b"): Preferences(locale="fr")}
        assert delete_preferences(s, tid, "b") and get_preferences(s, tid, "b") is None
    with session_scope() as s:
        assert (tid, "b") not in load_preferences(s, [(tid, "b")])  # the cache was dropped
        put_quiet_hours(s, tid, "US-FL", QuietHoursConfig(allowed="09:00-19:00"))
        put_quiet_hours(s, tid, "*", QuietHoursConfig(enabled=False))
        put_throttle(s, tid, ThrottleConfig.model_validate({"min_interval_s": {"*:sms": 60}}))
    with session_scope() as s:
        assert set(get_quiet_hours(s, tid)) == {"US-FL", "*"}
        policy = load_policies(s, [tid])[tid]
        assert policy.throttle is not None and policy.throttle.min_interval_s == {"*:sms": 60.0}
        assert load_histories(s, [], 60, datetime.now(UTC)) == {}
