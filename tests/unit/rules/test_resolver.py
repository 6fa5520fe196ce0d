"""Rule resolution (pure): the most specific rule wins, disabled mutes, defaults otherwise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from return_notify.config.rules import DEFAULT_RULES
from return_notify.core.regions import normalize_category, normalize_region
from return_notify.events import Milestone
from return_notify.rules.resolver import RuleIndex, RuleRecord, decide, explain_rules, validate_channels

LC, IT = Milestone.LABEL_CREATED, Milestone.IN_TRANSIT

RULES = [
    RuleRecord(1, LC, ("inapp",)),                                          # tenant-wide
    RuleRecord(2, LC, ("email",), region="EU"),
    RuleRecord(3, LC, ("sms",), region="EU-DE"),
    RuleRecord(4, LC, ("email", "sms"), category="apparel"),
    RuleRecord(5, LC, ("inapp",), region="EU", category="apparel", template="eu-apparel"),
    RuleRecord(6, LC, ("email",), region="EU-DE", category="electronics", enabled=False),
    RuleRecord(7, LC, ("sms",), region="US", urgency="informational"),
    RuleRecord(8, IT, ("email",), region="EU"),
]


@pytest.mark.parametrize(("region", "category", "milestone", "rule_id", "channels"), [
    # region + category beats a longer region alone (level first, then region depth)
    ("EU-DE", "apparel", LC, 5, ("inapp",)),
    # a disabled winner mutes its scope, even where less specific rules would notify
    ("EU-DE", "electronics", LC, 6, ()),
    ("EU-DE-BY", "electronics", LC, 6, ()),  # sub-regions are covered
    # region alone: the longer region wins
    ("EU-DE", "toys", LC, 3, ("sms",)),
    ("EU-FR", "toys", LC, 2, ("email",)),
    ("EU-FR", "apparel", LC, 5, ("inapp",)),
    # region beats category
    ("US", "apparel", LC, 7, ("sms",)),
    # category beats tenant-wide
    ("JP", "apparel", LC, 4, ("email", "sms")),
    (None, "apparel", LC, 4, ("email", "sms")),
    # prefixes are by whole segments: EU does not cover EUR
    ("EUR", "toys", LC, 1, ("inapp",)),
    (None, None, LC, 1, ("inapp",)),
    # case-insensitive, surrounding blanks ignored
    ("eu-de", " Apparel ", LC, 5, ("inapp",)),
    # rules are per milestone; no rule → config default
    ("EU-DE", None, IT, 8, ("email",)),
    ("US", None, IT, None, DEFAULT_RULES[IT].channels),
    ("EU", "apparel", Milestone.RETURN_APPROVED, None,
     DEFAULT_RULES[Milestone.RETURN_APPROVED].channels),
])
def test_most_specific_rule_wins(region: str | None, category: str | None, milestone: Milestone,
                                 rule_id: int | None, channels: tuple[str, ...]) -> None:
    # when
    got = decide(RULES, region, category, milestone)
    # then
    assert (got.rule_id, got.channels) == (rule_id, channels)
    # and the fast index agrees with the plain decision
    assert RuleIndex(RULES).resolve(region, category, milestone) == got


def test_winner_decides_urgency_and_template_with_defaults_for_unset_fields() -> None:
    us = decide(RULES, "US", None, LC)
    assert us.urgency == "informational" and us.template is None
    eu = decide(RULES, "EU-FR", "apparel", LC)
    assert eu.urgency == DEFAULT_RULES[LC].urgency and eu.template == "eu-apparel"
    muted = decide(RULES, "EU-DE", "electronics", LC)
    assert muted.channels == () and "disabled" in muted.reason and muted.template is None


def test_default_reason_and_reachability() -> None:
    got = decide([], "US", "apparel", LC)
    assert got.rule_id is None and "config default" in got.reason
    assert got.reachable(has_email=False, has_phone=True) == ("sms", "inapp")
    assert got.reachable(has_email=True, has_phone=False) == ("email", "inapp")


def test_equal_scopes_cannot_tie_lowest_id_wins() -> None:
    # the unique index prevents this; should it be dropped, resolution stays deterministic
    twins = [RuleRecord(9, LC, ("sms",), region="EU"), RuleRecord(4, LC, ("email",), region="EU")]
    assert decide(twins, "EU-DE", None, LC).rule_id == 4
    assert RuleIndex(twins).resolve("EU-DE", None, LC).rule_id == 4


def test_explain_lists_every_candidate_with_why() -> None:
    result, candidates = explain_rules(RULES, "EU-DE", "apparel", LC)
    outcomes = {(c.rule.id if c.rule else None): c.outcome for c in candidates}
    assert result.rule_id == 5
    assert outcomes == {5: "won", 3: "lost", 4: "lost", 2: "lost", 1: "lost",
                        6: "not_applicable", 7: "not_applicable", None: "default_unused"}
    assert candidates[0].rule is not None and candidates[0].rule.id == 5  # winner first
    why = {c.rule.id: c.why for c in candidates if c.rule}
    assert "less specific" in why[3] and "rule 5" in why[3]
    assert why[7] == "region US does not cover EU-DE"
    assert "category electronics" in why[6]
    assert 8 not in why  # other milestones are not candidates


def test_explain_without_matching_rule_uses_default() -> None:
    result, candidates = explain_rules(RULES, "US", None, IT)
    assert result.rule_id is None
    assert [c.outcome for c in candidates] == ["not_applicable", "default_used"]


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("*", None), ("any", None), ("", None), ("eu-de", "EU-DE"), (" us ", "US"),
])
def test_region_normalisation(raw: str | None, expected: str | None) -> None:
    assert normalize_region(raw) == expected


@pytest.mark.parametrize("bad", ["EU DE", "EU--DE", "-EU", "E" * 33, "EU/DE"])
def test_invalid_regions_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="region"):
        normalize_region(bad)


def test_category_and_channel_validation() -> None:
    assert normalize_category(" Apparel ") == "apparel"
    assert normalize_category("*") is None
    with pytest.raises(ValueError):
        normalize_category("bad\x00cat")
    assert validate_channels(["sms", "email", "sms"]) == ("sms", "email")
    with pytest.raises(ValueError, match="unknown channel"):
        validate_channels(["fax"])
    with pytest.raises(ValueError, match="disable"):
        validate_channels([])


_regions = st.sampled_from([None, "EU", "EU-DE", "EU-DE-BY", "EU-FR", "US", "US-CA"])
_categories = st.sampled_from([None, "apparel", "electronics"])
_milestones = st.sampled_from([LC, IT])


@st.composite
def _rule_sets(draw: st.DrawFn) -> list[RuleRecord]:
    scopes = draw(st.lists(st.tuples(_milestones, _regions, _categories), unique=True,
                           max_size=20))
    return [RuleRecord(i + 1, m, draw(st.sampled_from([("email",), ("sms", "inapp")])),
                       region=r, category=c, enabled=draw(st.booleans()))
            for i, (m, r, c) in enumerate(scopes)]


@settings(max_examples=300, deadline=None)
@given(rules=_rule_sets(), region=st.sampled_from([None, "EU", "EU-DE", "EU-DE-BY-X", "US",
                                                   "EUR", "JP"]),
       category=st.sampled_from([None, "apparel", "electronics", "toys"]), milestone=_milestones)
def test_index_decide_and_explain_always_agree(rules: list[RuleRecord], region: str | None,
                                               category: str | None, milestone: Milestone) -> None:
    plain = decide(rules, region, category, milestone)
    assert RuleIndex(rules).resolve(region, category, milestone) == plain
    explained, candidates = explain_rules(rules, region, category, milestone)
    assert explained == plain
    winners = [c for c in candidates if c.outcome in ("won", "default_used")]
    assert len(winners) == 1
    # no applicable rule is more specific than the winner
    if plain.rule_id is not None:
        won = next(r for r in rules if r.id == plain.rule_id)
        assert all(c.rule.specificity <= won.specificity for c in candidates
                   if c.outcome == "lost" and c.rule)
