"""The one permission check (pure): roles, region prefix scopes, category scopes."""

from __future__ import annotations

import pytest

from return_notify.access.principals import (
    Principal,
    PrincipalError,
    authorize,
    can_grant,
    validate_principal,
)


def p(role: str, regions: tuple[str, ...] = (), categories: tuple[str, ...] = ()) -> Principal:
    return Principal(1, 1, "acme", f"{role}-x", role, regions, categories)


OWNER, ADMIN, VIEWER = p("owner"), p("admin"), p("viewer")
EU, US, EU_DE = (p("regional_manager", (r,)) for r in ("EU", "US", "EU-DE"))
ELEC, APP = (p("category_manager", categories=(c,)) for c in ("electronics", "apparel"))
VIEWER_EU = p("viewer", ("EU",))

R, W = "rules:read", "rules:write"


@pytest.mark.parametrize(("who", "action", "region", "category", "allowed"), [
    # regional managers: both directions
    (EU, R, "US", None, False), (EU, W, "US", None, False),
    (US, R, "EU", None, False), (US, W, "EU-DE", "apparel", False),
    (EU, R, "EU-DE", "apparel", True), (EU, W, "EU-DE", "apparel", True), (EU, W, "EU", None, True),
    (EU, W, "EUR", None, False),  # whole segments only
    (EU, W, "eu-fr", None, True),  # case-insensitive
    # a region-ANY rule applies in EU too: readable, but only unrestricted principals change it
    (EU, R, None, None, True), (EU, W, None, None, False), (EU, W, None, "apparel", False),
    # a sub-region manager reads the parent's rule (it applies there) but cannot change it
    (EU_DE, R, "EU", None, True), (EU_DE, W, "EU", None, False), (EU_DE, W, "EU-DE-BY", None, True),
    # category managers: both directions
    (ELEC, R, "US", "apparel", False), (ELEC, W, "US", "apparel", False),
    (APP, R, "US", "electronics", False), (APP, W, None, "electronics", False),
    (ELEC, W, "US", "electronics", True), (ELEC, W, None, "electronics", True),
    (ELEC, R, "US", None, True), (ELEC, W, "US", None, False),
    # viewers read only, within their scope if they have one
    (VIEWER, R, "US", "apparel", True), (VIEWER, W, "US", "apparel", False),
    (VIEWER_EU, R, "US", None, False), (VIEWER_EU, R, "EU-DE", None, True),
    # owners and admins: everything, tenant-wide rules included
    (OWNER, W, None, None, True), (ADMIN, W, None, None, True), (ADMIN, R, "US", "x", True),
    # principals are managed by owners and admins only
    (EU, "principals:read", None, None, False), (VIEWER, "principals:read", None, None, False),
    (ADMIN, "principals:write", None, None, True),
    # other resources (templates, preferences) follow the same scope rules
    (EU, "templates:write", "US", None, False), (EU, "templates:write", "EU-FR", None, True),
    (OWNER, "rules:delete", None, None, False),  # unknown verbs are refused
])
def test_authorize(who: Principal, action: str, region: str | None, category: str | None,
                   allowed: bool) -> None:
    decision = authorize(who, action, region, category)
    assert bool(decision) is allowed, decision.reason
    assert who.name in decision.reason


def test_only_owners_grant_owner_and_admin() -> None:
    assert can_grant(OWNER, "owner") and can_grant(OWNER, "admin")
    assert not can_grant(ADMIN, "admin") and not can_grant(ADMIN, "owner")
    assert can_grant(ADMIN, "regional_manager") and can_grant(ADMIN, "viewer")
    assert not can_grant(EU, "viewer") and not can_grant(VIEWER, "viewer")


@pytest.mark.parametrize(("role", "regions", "categories"), [
    ("owner", ["EU"], []), ("admin", [], ["apparel"]), ("regional_manager", [], []),
    ("regional_manager", ["EU"], ["apparel"]), ("category_manager", [], []),
    ("category_manager", ["EU"], ["x"]), ("superuser", [], []), ("regional_manager", ["E U"], []),
])
def test_invalid_principals_are_rejected(role: str, regions: list[str],
                                         categories: list[str]) -> None:
    with pytest.raises(PrincipalError):
        validate_principal("someone", role, regions, categories)


def test_principal_scopes_are_normalised() -> None:
    assert validate_principal("eu-ops", "regional_manager", ["eu", "EU", "eu-de"], []) == (
        ("EU", "EU-DE"), ())
    assert validate_principal("v", "viewer", [], ["Apparel"]) == ((), ("apparel",))
