"""A rule's ``override_opt_out``: validation, resolution, and what preferences then keep (pure)."""

from __future__ import annotations

import pytest

from return_notify.events import Milestone
from return_notify.policy.preferences import (
    OPTED_OUT,
    Preferences,
    apply_preferences,
    rule_overrides_opt_out,
)
from return_notify.rules.resolver import (
    RuleIndex,
    RuleRecord,
    decide,
    effective_urgency,
    explain_rules,
    validate_override,
)
from return_notify.rules.store import RuleSpec

REFUND, IT, EXC = Milestone.REFUND_PROCESSED, Milestone.IN_TRANSIT, Milestone.EXCEPTION


@pytest.mark.parametrize(("milestone", "urgency", "expected"), [
    (REFUND, None, "transactional"), (EXC, None, "transactional"),
    (IT, None, "informational"), (IT, "transactional", "transactional"),
    (REFUND, "informational", "informational"),
])
def test_effective_urgency_is_the_rules_or_the_milestones(milestone: Milestone,
                                                          urgency: str | None,
                                                          expected: str) -> None:
    assert effective_urgency(milestone, urgency) == expected


@pytest.mark.parametrize(("milestone", "urgency"), [
    (REFUND, None), (EXC, None), (REFUND, "transactional"), (IT, "transactional"),
])
def test_override_is_accepted_on_transactional_rules(milestone: Milestone,
                                                     urgency: str | None) -> None:
    assert validate_override(milestone, urgency, True) is True
    spec = RuleSpec.build(milestone.value, ["email"], urgency=urgency, override_opt_out=True)
    assert spec.override_opt_out


@pytest.mark.parametrize(("milestone", "urgency", "says"), [
    (IT, None, "in_transit is informational by default"),
    (REFUND, "informational", "its urgency is informational"),
    (Milestone.RESTOCKED, None, "restocked is informational by default"),
])
def test_override_is_rejected_with_a_clear_message_otherwise(milestone: Milestone,
                                                             urgency: str | None,
                                                             says: str) -> None:
    with pytest.raises(ValueError, match="only for transactional rules") as err:
        RuleSpec.build(milestone.value, ["sms"], urgency=urgency, override_opt_out=True)
    assert says in str(err.value) and "set urgency to transactional" in str(err.value)
    # a direct construction (as the admin API does) is checked too
    with pytest.raises(ValueError, match="only for transactional rules"):
        RuleSpec(milestone, ("sms",), urgency=urgency, override_opt_out=True)
    # and without the flag the same rule is fine
    assert not RuleSpec.build(milestone.value, ["sms"], urgency=urgency).override_opt_out


def test_override_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="true or false"):
        validate_override(REFUND, None, "yes")  # type: ignore[arg-type]


RULES = [
    RuleRecord(1, REFUND, ("email", "sms"), region="US", override_opt_out=True),
    RuleRecord(2, REFUND, ("email",), region="EU"),
    RuleRecord(3, REFUND, ("email",), region="CA", override_opt_out=True, enabled=False),
    RuleRecord(4, IT, ("sms",), region="US", urgency="transactional", override_opt_out=True),
]


@pytest.mark.parametrize(("region", "milestone", "override"), [
    ("US-CA", REFUND, True),     # the US rule says so, and refund_processed is transactional
    ("EU-DE", REFUND, False),    # the EU rule does not
    ("JP", REFUND, False),       # no rule: the config default never overrides
    ("CA", REFUND, False),       # a disabled rule notifies on no channel at all
    ("US", IT, True),            # in_transit made transactional by its rule
])
def test_the_winning_rule_carries_the_override(region: str, milestone: Milestone,
                                               override: bool) -> None:
    # given / when
    decided = decide(RULES, region, None, milestone)
    indexed = RuleIndex(RULES).resolve(region, None, milestone)
    explained, _ = explain_rules(RULES, region, None, milestone)
    # then the three resolvers agree, and say why in the reason
    assert decided == indexed == explained
    assert decided.override_opt_out is override
    assert rule_overrides_opt_out(decided) is override
    assert ("overrides channel opt-outs" in decided.reason) is override


def test_a_stored_override_on_an_informational_rule_is_ignored() -> None:
    # a row written around the store's validation (by hand, by an older version)
    rules = [RuleRecord(9, IT, ("sms",), region="US", override_opt_out=True)]
    resolved = decide(rules, "US", None, IT)
    assert resolved.urgency == "informational" and not resolved.override_opt_out
    assert not rule_overrides_opt_out(resolved)


def test_an_overriding_rule_keeps_opted_out_channels_but_adds_none() -> None:
    prefs = Preferences(channels={"email": False, "sms": False})
    us = decide(RULES, "US", None, REFUND)
    eu = decide(RULES, "EU", None, REFUND)
    assert apply_preferences(us.channels, prefs, REFUND, rule_overrides_opt_out(us)) == (
        ("email", "sms"), ())
    assert apply_preferences(eu.channels, prefs, REFUND, rule_overrides_opt_out(eu)) == (
        (), (("email", OPTED_OUT),))
