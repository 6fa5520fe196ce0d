"""Quiet hours: windows, legal floors of stricter US states, DST, time-zone resolution."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from return_notify.core.regions import region_chain
from return_notify.policy.quiet_hours import (
    DEFAULT_WINDOW,
    LEGAL_WINDOWS,
    QuietHoursConfig,
    Window,
    next_allowed,
    next_allowed_all,
    parse_span,
    recipient_zones,
    resolve,
)

NY = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("now", "expected"), [
    (utc(2026, 6, 10, 16, 0), None),                        # 12:00 EDT: send now
    (utc(2026, 6, 10, 12, 0), utc(2026, 6, 10, 12, 0)),     # 08:00 EDT sharp: allowed
    (utc(2026, 6, 10, 11, 59), utc(2026, 6, 10, 12, 0)),    # 07:59 EDT: wait a minute
    (utc(2026, 6, 11, 0, 59), None),                        # 20:59 EDT
    (utc(2026, 6, 11, 1, 0), utc(2026, 6, 11, 12, 0)),      # 21:00 EDT: the end is exclusive
    (utc(2026, 6, 11, 6, 30), utc(2026, 6, 11, 12, 0)),     # 02:30 EDT
])
def test_default_window_in_new_york(now: datetime, expected: datetime | None) -> None:
    got = next_allowed(now, NY, DEFAULT_WINDOW)
    assert got == expected or (expected is not None and got is None and now == expected)


def test_spring_forward_night_waits_until_eight_daylight_time() -> None:
    # 2026-03-08 02:00 EST jumps to 03:00 EDT; at 01:30 EST (06:30 UTC) the next 08:00 is EDT
    assert next_allowed(utc(2026, 3, 8, 6, 30), NY, DEFAULT_WINDOW) == utc(2026, 3, 8, 12, 0)
    # the evening before (21:30 EST) likewise
    assert next_allowed(utc(2026, 3, 8, 2, 30), NY, DEFAULT_WINDOW) == utc(2026, 3, 8, 12, 0)


def test_fall_back_night_waits_until_eight_standard_time() -> None:
    # 2026-11-01 02:00 EDT falls back to 01:00 EST; 01:30 happens twice
    first_0130 = utc(2026, 11, 1, 5, 30)   # 01:30 EDT
    second_0130 = utc(2026, 11, 1, 6, 30)  # 01:30 EST
    for now in (first_0130, second_0130):
        assert next_allowed(now, NY, DEFAULT_WINDOW) == utc(2026, 11, 1, 13, 0)
    # 20:30 EST that day is allowed, 21:00 EST (02:00 UTC next day) is not
    assert next_allowed(utc(2026, 11, 2, 1, 30), NY, DEFAULT_WINDOW) is None
    assert next_allowed(utc(2026, 11, 2, 2, 0), NY, DEFAULT_WINDOW) == utc(2026, 11, 2, 13, 0)


def test_window_edges_inside_a_dst_gap_or_fold_are_conservative() -> None:
    # a window starting at 02:30 on spring-forward day: 02:30 never happens; the clock
    # reads past it from the transition on (03:00 EDT)
    w = Window.daily("02:30-21:00")
    assert next_allowed(utc(2026, 3, 8, 6, 0), NY, w) == utc(2026, 3, 8, 7, 0)
    # a window ending at 02:30 that day ends at the transition too
    w = Window.daily("00:00-02:30")
    assert next_allowed(utc(2026, 3, 8, 6, 59), NY, w) is None
    assert next_allowed(utc(2026, 3, 8, 7, 0), NY, w) == utc(2026, 3, 9, 4, 0)
    # a window starting at 01:30 on fall-back day: the *later* 01:30 (EST)
    w = Window.daily("01:30-21:00")
    assert next_allowed(utc(2026, 11, 1, 5, 0), NY, w) == utc(2026, 11, 1, 6, 30)
    # a window ending at 01:30 on fall-back day: the *earlier* 01:30 (EDT)
    w = Window.daily("00:00-01:30")
    assert next_allowed(utc(2026, 11, 1, 5, 45), NY, w) == utc(2026, 11, 2, 5, 0)


def test_midnight_dst_zone_and_window_ending_at_2400() -> None:
    # Santiago springs forward at 24:00 (2026-09-06 00:00 -04 → 01:00 -03)
    w = Window.daily("00:30-24:00")
    assert next_allowed(utc(2026, 9, 6, 3, 50), "America/Santiago", w) is None  # 23:50
    assert next_allowed(utc(2026, 9, 6, 4, 0), "America/Santiago", w) is None   # 01:00
    w = Window.daily("08:00-24:00")
    assert next_allowed(utc(2026, 9, 6, 4, 0), "America/Santiago", w) == utc(2026, 9, 6, 11, 0)


def test_stricter_states_are_legal_floors() -> None:
    default = QuietHoursConfig()
    fl = resolve({}, "US-FL", default)
    assert fl is not None and fl.window.describe()["mon"] == "08:00-20:00"
    tx = resolve({}, "us-tx", default)
    assert tx is not None and tx.window.describe()["sun"] == "12:00-21:00"
    assert tx.window.describe()["mon"] == "09:00-21:00"
    ri = resolve({}, "US-RI", default)
    assert ri is not None
    assert ri.window.describe()["wed"] == "09:00-18:00"
    assert ri.window.describe()["sat"] == ri.window.describe()["sun"] == "10:00-17:00"
    ct = resolve({}, "US-CT", default)
    assert ct is not None and ct.window.describe()["fri"] == "09:00-20:00"
    for state in ("OK", "MD", "MS", "NJ"):
        assert LEGAL_WINDOWS[f"US-{state}"].describe()["tue"] == "08:00-20:00"
    # 20:30 in Miami: fine federally, quiet in Florida
    at_2030 = utc(2026, 6, 11, 0, 30)
    us = resolve({}, "US", default)
    assert us is not None and next_allowed(at_2030, NY, us.window) is None
    assert next_allowed(at_2030, NY, fl.window) == utc(2026, 6, 11, 12, 0)


def test_texas_sunday_morning_waits_until_noon() -> None:
    tx = resolve({}, "US-TX", QuietHoursConfig())
    assert tx is not None
    sunday_10am_central = utc(2026, 6, 14, 15, 0)
    assert next_allowed(sunday_10am_central, "America/Chicago", tx.window) == utc(2026, 6, 14, 17, 0)


def test_tenant_config_cannot_loosen_a_legal_floor_unless_it_says_so() -> None:
    loose = QuietHoursConfig(allowed="07:00-22:00")
    eff = resolve({"*": loose}, "US-FL", QuietHoursConfig())
    assert eff is not None and eff.window.describe()["mon"] == "08:00-20:00"
    assert eff.source == "tenant:*"
    eu = resolve({"*": loose}, "EU-DE", QuietHoursConfig())
    assert eu is not None and eu.window.describe()["mon"] == "07:00-22:00"
    waived = QuietHoursConfig(allowed="07:00-22:00", enforce_legal=False)
    eff = resolve({"US-FL": waived}, "US-FL", QuietHoursConfig())
    assert eff is not None and eff.window.describe()["mon"] == "07:00-22:00"


def test_most_specific_region_config_wins_and_off_switch() -> None:
    configs = {"*": QuietHoursConfig(allowed="09:00-20:00"),
               "EU": QuietHoursConfig(allowed="10:00-19:00"),
               "EU-DE": QuietHoursConfig(enabled=False)}
    assert region_chain("EU-DE-BY") == ["EU-DE-BY", "EU-DE", "EU", "*"]
    assert resolve(configs, "EU-DE-BY", QuietHoursConfig()) is None
    eff = resolve(configs, "EU-FR", QuietHoursConfig())
    assert eff is not None and eff.source == "tenant:EU"
    eff = resolve(configs, None, QuietHoursConfig())
    assert eff is not None and eff.source == "tenant:*"


def test_channels_and_exemptions() -> None:
    eff = resolve({}, "US", QuietHoursConfig())
    assert eff is not None
    assert eff.applies("sms", "in_transit") and eff.applies("inapp", "in_transit")
    assert not eff.applies("email", "in_transit")
    eff = resolve({"*": QuietHoursConfig(channels=("sms", "email"),
                                         exempt_milestones=("exception",))}, "US", QuietHoursConfig())
    assert eff is not None and eff.applies("email", "refund_processed")
    assert not eff.applies("sms", "exception")


@pytest.mark.parametrize("bad", ["21:00-08:00", "8-21", "08:00-25:00", "08:00"])
def test_invalid_spans_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_span(bad)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        QuietHoursConfig(channels=("fax",))
    with pytest.raises(ValueError):
        QuietHoursConfig(default_timezone="Mars/Olympus")
    with pytest.raises(ValueError):
        QuietHoursConfig(days={"funday": "08:00-09:00"})
    cfg = QuietHoursConfig(days={"Saturday": None})
    assert cfg.window().describe()["sat"] is None


def test_several_zones_must_all_be_allowed() -> None:
    # 08:30 Eastern is 05:30 Pacific: someone who may be on either coast waits until 11:00 ET
    now = utc(2026, 6, 10, 12, 30)
    both = (NY, "America/Los_Angeles")
    assert next_allowed_all(now, both, DEFAULT_WINDOW) == utc(2026, 6, 10, 15, 0)
    assert next_allowed_all(utc(2026, 6, 10, 18, 0), both, DEFAULT_WINDOW) is None


def test_recipient_zone_resolution() -> None:
    assert recipient_zones("Europe/Berlin", "+14155550123", "US-FL") == ("Europe/Berlin",)
    assert recipient_zones(None, None, "US-FL") == (NY, "America/Chicago")
    assert recipient_zones(None, None, "US")[0] == NY and len(recipient_zones(None, None, "US")) == 4
    assert recipient_zones(None, None, "EU-DE", "Europe/Berlin") == ("Europe/Berlin",)
    assert recipient_zones(None, None, None) == ("UTC",)


def test_us_area_code_gives_the_zone() -> None:
    pytest.importorskip("phonenumbers")
    assert recipient_zones(None, "+14155550123", "US") == ("America/Los_Angeles",)
    assert recipient_zones(None, "+13055550123", None) == (NY,)
    # toll-free: no geography, fall back to the region
    assert recipient_zones(None, "+18005550123", "US-TX") == ("America/Chicago", "America/Denver")


ZONES = [NY, "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Pacific/Apia",
         "America/Havana", "Asia/Kolkata", "UTC"]


@pytest.mark.parametrize("zone", ZONES)
def test_next_allowed_is_the_first_allowed_instant_all_year(zone: str) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    windows = [DEFAULT_WINDOW, LEGAL_WINDOWS["US-RI"], LEGAL_WINDOWS["US-TX"],
               Window.daily("00:30-02:30"), Window.daily("01:00-24:00")]

    @settings(max_examples=150, deadline=None)
    @given(minutes=st.integers(0, 366 * 24 * 60), w=st.sampled_from(windows))
    def check(minutes: int, w: Window) -> None:
        from datetime import timedelta

        now = utc(2026, 1, 1) + timedelta(minutes=minutes)
        got = next_allowed(now, zone, w)
        if got is None:
            return
        assert got > now
        assert next_allowed(got, zone, w) is None  # allowed when we said so
        assert next_allowed(got - timedelta(minutes=1), zone, w) is not None  # not earlier

    check()
