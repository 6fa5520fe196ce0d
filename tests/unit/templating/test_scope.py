"""Which override renders a part: locale (outermost), then variant, then scope specificity,
then milestone (``template_scope``), and the same order through ``rendering.render``."""

from __future__ import annotations

from typing import Any

import pytest

from return_notify.templating.render import render
from return_notify.templating.samples import sample_context
from return_notify.templating.scope import (
    TemplateScope,
    TenantOverrides,
    listing_filter,
    normalize_variant,
    scope_order,
)


def src(name: str) -> str:
    return f"{name} {{{{ return_id }}}} {{{{ cta_url }}}}"


def slot(locale: str = "en", variant: str | None = None, region: str | None = None,
         category: str | None = None, milestone: str = "refund_processed"
         ) -> tuple[Any, ...]:
    return ("sms", milestone, "text", locale, variant, region, category)


EVERY_SCOPE = {
    slot(): src("any"),
    slot(category="apparel"): src("apparel"),
    slot(region="EU"): src("eu"),
    slot(region="EU-DE"): src("eu-de"),
    slot(region="EU", category="apparel"): src("eu+apparel"),
    slot(region="EU-DE", category="apparel"): src("eu-de+apparel"),
    slot(region="US"): src("us"),
    slot(variant="eu_formal"): src("formal any"),
    slot(variant="eu_formal", region="EU"): src("formal eu"),
}


def find(overrides: TenantOverrides, region: str | None, category: str | None,
         variant: str | None, locale: str = "en", milestone: str = "refund_processed"
         ) -> str | None:
    found = overrides.scoped(region, category, variant).find("sms", milestone, "text", locale)
    return found.split(" {{")[0] if found else None


@pytest.mark.parametrize(("region", "category", "variant", "expected"), [
    # scope specificity, as rules rank: region+category > region (longer first) > category > ANY
    ("EU-DE", "apparel", None, "eu-de+apparel"),
    ("EU-DE-BY", "apparel", None, "eu-de+apparel"),  # whole segments: EU-DE covers EU-DE-BY
    ("EU-FR", "apparel", None, "eu+apparel"),
    ("EU-DE", "electronics", None, "eu-de"),  # region beats category; the longer region wins
    ("EU-FR", None, None, "eu"),
    ("EUR", "apparel", None, "apparel"),  # EU does not cover EUR
    ("US", "apparel", None, "us"),  # region (level 2) beats category (level 1)
    ("JP", "apparel", None, "apparel"),
    ("JP", None, None, "any"),
    (None, None, None, "any"),
    ("eu-de", "Apparel", None, "eu-de+apparel"),  # event values compare case-insensitively
    # the variant first (its most specific scope), then the default variant's scopes
    ("EU-DE", "apparel", "eu_formal", "formal eu"),
    ("US", None, "eu_formal", "formal any"),
    # a variant without overrides falls back to the default ones
    ("EU-DE", "apparel", "holiday", "eu-de+apparel"),
    ("EU-DE", "apparel", "default", "eu-de+apparel"),
])
def test_variant_then_scope_specificity(region: str | None, category: str | None,
                                        variant: str | None, expected: str) -> None:
    assert find(TenantOverrides(EVERY_SCOPE), region, category, variant) == expected


def test_us_override_is_never_used_outside_us() -> None:
    overrides = TenantOverrides({slot(region="US"): src("us")})
    assert find(overrides, "US-CA", None, None) == "us"
    assert find(overrides, "EU", None, None) is None
    assert find(overrides, None, None, None) is None
    assert not overrides.scoped("EU", None, None).covers("sms")
    assert overrides.scoped("US", None, None).covers("sms")
    assert len(overrides.scoped("EU")) == 0 and len(overrides.scoped("US")) == 1


def test_milestone_comes_after_scope() -> None:
    # the EU '*' override is more specific in scope than the ANY milestone-specific one
    overrides = TenantOverrides({
        slot(): src("any specific"),
        slot(region="EU", milestone="*"): src("eu every milestone"),
        slot(milestone="*"): src("any every milestone"),
    })
    assert find(overrides, "EU-DE", None, None) == "eu every milestone"
    assert find(overrides, "US", None, None) == "any specific"
    assert find(overrides, "US", None, None, milestone="return_approved") == "any every milestone"


def test_locale_is_outermost_in_render() -> None:
    # given a German default override and an English-only EU variant
    overrides = TenantOverrides({
        ("sms", "refund_processed", "text", "de", None, None, None): src("de default"),
        ("sms", "refund_processed", "text", "en", "eu_formal", "EU", None): src("en formal"),
    })
    view = overrides.scoped("EU-DE", None, "eu_formal")

    def text(locale: str) -> str:
        ctx = sample_context("refund_processed", "acme", locale=locale)
        return render("sms", "refund_processed", ctx, locale, view).text

    # then a German customer gets the German default, not the English variant (locale first)
    assert text("de-DE").startswith("de default")
    # and an English customer the variant
    assert text("en-GB").startswith("en formal")
    # and with a German packaged template but no German override, the packaged one wins
    only_en = TenantOverrides({("sms", "refund_processed", "text", "en", "eu_formal", "EU",
                                None): src("en formal")}).scoped("EU", None, "eu_formal")
    ctx = sample_context("refund_processed", "acme", locale="de-DE")
    assert "en formal" not in render("sms", "refund_processed", ctx, "de-DE", only_en).text


def test_scope_order_ranks_like_rules() -> None:
    scopes = [TemplateScope(*k) for k in [
        (None, None, None), ("EU", None, None), ("EU-DE", None, None), (None, "apparel", None),
        ("EU", "apparel", None), ("EU", None, "v"), (None, None, "v"), ("US", None, None)]]
    order = scope_order(scopes, "EU-DE-BY", "apparel", "v")
    assert [(s.variant, s.region, s.category) for s in order] == [
        ("v", "EU", None), ("v", None, None),
        (None, "EU", "apparel"), (None, "EU-DE", None), (None, "EU", None),
        (None, None, "apparel"), (None, None, None)]


def test_old_four_part_keys_are_the_any_default_scope() -> None:
    overrides = TenantOverrides({("sms", "*", "text", "en"): src("legacy")})
    assert find(overrides, "EU", "apparel", "eu_formal") == "legacy"
    assert overrides.find("sms", "in_transit", "text", "en") is not None
    assert overrides.scoped() is overrides  # the root is the ANY/default view


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None), ("", None), ("default", None), (" eu_formal ", "eu_formal"),
    ("holiday.v2", "holiday.v2")])
def test_normalize_variant(raw: str | None, expected: str | None) -> None:
    assert normalize_variant(raw) == expected


@pytest.mark.parametrize("bad", ["EU Formal", "a" * 65, "-x", "x/y"])
def test_bad_variant_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match="variant"):
        normalize_variant(bad)


def test_scope_parse_normalises_like_rules() -> None:
    assert TemplateScope.parse("eu-de", "Apparel", "default") == TemplateScope("EU-DE", "apparel")
    assert TemplateScope.parse("*", "any", None) == TemplateScope()
    with pytest.raises(ValueError, match="region"):
        TemplateScope.parse("E U")


def test_listing_filter() -> None:
    class Row:
        def __init__(self, region: str | None, category: str | None, variant: str | None) -> None:
            self.region, self.category, self.variant = region, category, variant

    rows = [Row(None, None, None), Row("EU", None, "eu_formal"), Row("US", "apparel", None)]
    assert len([r for r in rows if listing_filter()(r)]) == 3
    assert [r.region for r in rows if listing_filter(region="eu")(r)] == ["EU"]
    assert [r.region for r in rows if listing_filter(region="*")(r)] == [None]
    assert [r.region for r in rows if listing_filter(variant="default")(r)] == [None, "US"]
    assert [r.region for r in rows if listing_filter(category="apparel")(r)] == ["US"]


@pytest.mark.parametrize(("role", "regions", "categories", "action", "region", "category",
                          "allowed"), [
    # a test send is checked like a write: scope within the principal's, never a viewer
    ("regional_manager", ("EU",), (), "templates:send", "EU-DE", None, True),
    ("regional_manager", ("EU",), (), "templates:send", "US", None, False),
    ("regional_manager", ("EU",), (), "templates:send", None, None, False),
    ("category_manager", (), ("apparel",), "templates:send", None, "apparel", True),
    ("category_manager", (), ("apparel",), "templates:send", None, "electronics", False),
    ("viewer", (), (), "templates:send", "US", None, False),
    ("owner", (), (), "templates:send", None, None, True),
    ("owner", (), (), "rules:send", None, None, False),  # send exists for templates only
    # branding is tenant-wide: read by all, written by owners and admins only
    ("viewer", ("EU",), (), "branding:read", None, None, True),
    ("regional_manager", ("EU",), (), "branding:write", None, None, False),
    ("category_manager", (), ("apparel",), "branding:write", None, None, False),
    ("admin", (), (), "branding:write", None, None, True),
])
def test_send_and_branding_permissions(role: str, regions: tuple[str, ...],
                                       categories: tuple[str, ...], action: str,
                                       region: str | None, category: str | None,
                                       allowed: bool) -> None:
    from return_notify.access.principals import Principal, authorize

    who = Principal(1, 1, "acme", f"{role}-x", role, regions, categories)
    decision = authorize(who, action, region, category)
    assert bool(decision) is allowed, decision.reason
