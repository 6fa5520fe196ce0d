"""Preference matrix, event defaults, and the throttle/digest plan (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from return_notify.events import Milestone
from return_notify.policy.preferences import (
    OPTED_OUT,
    OPTED_OUT_MILESTONE,
    PREFERRED_OTHER,
    Preferences,
    apply_preferences,
    effective_preferences,
    event_defaults,
    rule_overrides_opt_out,
)
from return_notify.policy.quiet_hours import DEFAULT_WINDOW
from return_notify.policy.throttle import (
    DIGEST,
    PENDING,
    QUIET_HOURS,
    SCHEDULED,
    THROTTLE,
    History,
    ThrottleConfig,
    is_stale,
    parse_duration,
    plan,
    remember,
)

ALL = ("email", "sms", "inapp")
REFUND = Milestone.REFUND_PROCESSED
NOW = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York


# given prefs / milestone / override → expected channels kept and skipped
MATRIX = [
    ({}, REFUND, False, ALL, ()),
    ({"channels": {"sms": False}}, REFUND, False, ("email", "inapp"), (("sms", OPTED_OUT),)),
    ({"channels": {"sms": False}}, REFUND, True, ALL, ()),
    ({"milestones": {"in_transit": {"sms": False}}}, Milestone.IN_TRANSIT, False, ("inapp",),
     (("sms", OPTED_OUT_MILESTONE),)),
    ({"milestones": {"in_transit": {"sms": False}}}, REFUND, False, ALL, ()),
    ({"channels": {"sms": False}, "milestones": {"refund_processed": {"sms": True}}}, REFUND,
     False, ALL, ()),
    ({"channels": {"email": True}, "milestones": {"refund_processed": {"email": False}}}, REFUND,
     False, ("sms", "inapp"), (("email", OPTED_OUT_MILESTONE),)),
    ({"preferred_channel": "sms"}, REFUND, False, ("sms", "inapp"), (("email", PREFERRED_OTHER),)),
    ({"preferred_channel": "inapp"}, REFUND, False, ("inapp",),
     (("email", PREFERRED_OTHER), ("sms", PREFERRED_OTHER))),
    # preferred channel the rule does not use: the rule's channels stay
    ({"preferred_channel": "sms"}, Milestone.RETURN_APPROVED, False, ("email", "inapp"), ()),
    # preferred channel opted out: nothing is dropped in its favour
    ({"preferred_channel": "sms", "channels": {"sms": False}}, REFUND, False,
     ("email", "inapp"), (("sms", OPTED_OUT),)),
    ({"channels": {"email": False, "sms": False, "inapp": False}}, REFUND, False, (),
     (("email", OPTED_OUT), ("sms", OPTED_OUT), ("inapp", OPTED_OUT))),
]


@pytest.mark.parametrize(("prefs", "milestone", "override", "kept", "skipped"), MATRIX)
def test_preference_matrix(prefs: dict[str, object], milestone: Milestone, override: bool,
                           kept: tuple[str, ...], skipped: tuple[tuple[str, str], ...]) -> None:
    rule_channels = ("email", "inapp") if milestone is Milestone.RETURN_APPROVED else (
        ("sms", "inapp") if milestone is Milestone.IN_TRANSIT else ALL)
    got = apply_preferences(rule_channels, Preferences.model_validate(prefs), milestone, override)
    assert got == (kept, skipped)


def test_preferences_never_add_a_channel_the_rule_did_not_give() -> None:
    prefs = Preferences(channels={"sms": True}, preferred_channel="sms")
    assert apply_preferences(("email",), prefs, REFUND, True) == (("email",), ())


def test_override_is_only_for_transactional_rules_that_ask_for_it() -> None:
    from return_notify.rules.resolver import ResolvedRule

    def rule(urgency: str, override: bool) -> ResolvedRule:
        return ResolvedRule(("email",), urgency, None, 1, "test", override)

    assert rule_overrides_opt_out(rule("transactional", True))
    assert not rule_overrides_opt_out(rule("informational", True))
    assert not rule_overrides_opt_out(rule("transactional", False))


def test_event_defaults_and_precedence() -> None:
    data = {"preferences": {"channels": {"sms": False}, "locale": "fr-FR",
                            "timezone": "Europe/Paris", "preferred_channel": "email"}}
    assert event_defaults(data).channels == {"sms": False}
    # the event's customer locale beats data.preferences; stored choices beat both
    eff = effective_preferences(None, data=data, locale="de-DE", timezone=None)
    assert (eff.locale, eff.timezone) == ("de-DE", "Europe/Paris")
    stored = Preferences(channels={"sms": True}, locale="es")
    eff = effective_preferences(stored, data=data, locale="de-DE")
    assert eff.channels == {"sms": True} and eff.locale == "es"
    assert eff.preferred_channel == "email"


@pytest.mark.parametrize("bad", [{"channels": {"fax": True}}, "sms off", {"locale": "not a tag!"},
                                 {"unknown": 1}])
def test_malformed_event_defaults_are_ignored(bad: object) -> None:
    assert event_defaults({"preferences": bad}) == Preferences()


def test_invalid_stored_preferences_are_rejected() -> None:
    with pytest.raises(ValueError):
        Preferences.model_validate({"timezone": "Nowhere/Land"})
    with pytest.raises(ValueError):
        Preferences.model_validate({"milestones": {"teleported": {"sms": False}}})


# ----------------------------------------------------------------------- throttle ---

def test_durations() -> None:
    assert parse_duration("6h") == 21600 and parse_duration("90s") == 90
    assert parse_duration("2m") == 120 and parse_duration(5) == 5
    with pytest.raises(ValueError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        ThrottleConfig.model_validate({"min_interval_s": {"in_transit": "6h"}})
    with pytest.raises(ValueError):
        ThrottleConfig.model_validate({"digest_window_s": {"pigeon": 10}})


def test_nothing_configured_sends_now() -> None:
    p = plan(now=NOW, milestone="in_transit", channel="sms", history=History(),
             throttle=ThrottleConfig())
    assert p.state == PENDING


def test_eta_updates_at_most_one_sms_per_six_hours() -> None:
    cfg = ThrottleConfig.from_spec("in_transit:sms=6h", "")
    h = History()
    h.note_sent("in_transit", NOW - timedelta(hours=1))
    p = plan(now=NOW, milestone="in_transit", channel="sms", history=h, throttle=cfg)
    assert (p.state, p.at, p.reason) == (SCHEDULED, NOW + timedelta(hours=5), THROTTLE)
    # another milestone is not held by the in_transit interval; in-app is not throttled
    assert plan(now=NOW, milestone="refund_processed", channel="sms", history=h,
                throttle=cfg).state == PENDING
    assert plan(now=NOW, milestone="in_transit", channel="inapp", history=h,
                throttle=cfg).state == PENDING
    # a * interval counts any milestone
    cfg = ThrottleConfig.from_spec("*:sms=2h", "")
    p = plan(now=NOW, milestone="refund_processed", channel="sms", history=h, throttle=cfg)
    assert p.at == NOW + timedelta(hours=1)


def test_digest_opens_a_group_and_later_ones_join_it() -> None:
    cfg = ThrottleConfig.from_spec("", "email=2m")
    h = History()
    first = plan(now=NOW, milestone="return_initiated", channel="email", history=h, throttle=cfg)
    assert (first.state, first.at, first.reason) == (SCHEDULED, NOW + timedelta(minutes=2), DIGEST)
    remember(h, first, "return_initiated", NOW)
    later = NOW + timedelta(seconds=50)
    second = plan(now=later, milestone="return_approved", channel="email", history=h, throttle=cfg)
    assert second.at == first.at  # same due time: the group goes out once, with the latest
    # an exception joins an open group but never opens one
    assert plan(now=later, milestone="exception", channel="email", history=h,
                throttle=cfg).at == first.at
    assert plan(now=NOW, milestone="exception", channel="email", history=History(),
                throttle=cfg).state == PENDING
    # after the group's due time a new group opens
    after = NOW + timedelta(minutes=3)
    third = plan(now=after, milestone="label_created", channel="email", history=h, throttle=cfg)
    assert third.at == after + timedelta(minutes=2)


def test_quiet_hours_move_any_due_time_out_of_the_night() -> None:
    night = datetime(2026, 6, 11, 6, 0, tzinfo=UTC)  # 02:00 in New York
    p = plan(now=night, milestone="refund_processed", channel="sms", history=History(),
             throttle=ThrottleConfig(), quiet=DEFAULT_WINDOW, zones=("America/New_York",))
    assert (p.state, p.at, p.reason) == (SCHEDULED, datetime(2026, 6, 11, 12, 0, tzinfo=UTC),
                                         QUIET_HOURS)
    # a throttle slot at 23:00 is pushed to 08:00 too
    h = History()
    h.note_sent("in_transit", NOW + timedelta(hours=5))  # 17:00 NY
    p = plan(now=NOW, milestone="in_transit", channel="sms", history=h,
             throttle=ThrottleConfig.from_spec("in_transit:sms=6h", ""), quiet=DEFAULT_WINDOW,
             zones=("America/New_York",))
    assert p.at == datetime(2026, 6, 11, 12, 0, tzinfo=UTC) and p.reason == QUIET_HOURS
    # inside the window: now
    assert plan(now=NOW, milestone="refund_processed", channel="sms", history=History(),
                throttle=ThrottleConfig(), quiet=DEFAULT_WINDOW,
                zones=("America/New_York",)).state == PENDING


def test_staleness_of_waiting_deliveries() -> None:
    t0, t1 = NOW, NOW + timedelta(minutes=1)
    # the delivery about the current state is never stale, even for a repeatable milestone
    assert not is_stale("in_transit", t1, "in_transit", t1)
    assert is_stale("in_transit", t0, "in_transit", t1)
    assert is_stale("return_initiated", t0, "return_approved", t1)
    assert not is_stale("return_approved", t1, "return_approved", t0)  # same, not repeatable
    # an exception is stale only once a main-line milestone happened after it
    assert not is_stale("exception", t1, "in_transit", t0)
    assert is_stale("exception", t0, "warehouse_received", t1)
    assert not is_stale("label_created", t0, None, None)


def test_the_tracking_opt_out_merges_like_the_other_choices() -> None:
    from return_notify.policy.preferences import Preferences, effective_preferences, merge

    assert merge(Preferences(tracking=False), Preferences(locale="de")).tracking is False
    assert merge(Preferences(tracking=False), Preferences(tracking=True)).tracking is True
    assert effective_preferences(Preferences(), data={"preferences": {"tracking": False}}
                                 ).tracking is False
    assert effective_preferences(Preferences(tracking=True),
                                 data={"preferences": {"tracking": False}}).tracking is True
    assert Preferences(tracking=False).as_json() == {"tracking": False}


def test_the_customers_locale_alone_is_validated_once_and_still_validated() -> None:
    from pydantic import ValidationError

    from return_notify.policy.preferences import Preferences, effective_preferences

    first = effective_preferences(None, data={}, locale="de-AT", timezone="Europe/Vienna")
    assert first == Preferences(locale="de-AT", timezone="Europe/Vienna")
    # the same pair again: the instance validated the first time (frozen, shared)
    assert effective_preferences(None, data=None, locale="de-AT",
                                 timezone="Europe/Vienna") is first
    # producer defaults still go under the customer's own locale
    eff = effective_preferences(None, data={"preferences": {"locale": "fr", "channels": {
        "sms": False}}}, locale="de-AT", timezone=None)
    assert (eff.locale, eff.channels) == ("de-AT", {"sms": False})
    with pytest.raises(ValidationError):
        effective_preferences(None, locale="de-AT", timezone="Not/AZone")
