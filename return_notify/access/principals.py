"""Principals (who administers a tenant), their roles and API keys, and THE permission check.

**Roles.** ``owner``: everything. ``admin``: everything, except creating owner or admin
principals or keys for them. ``regional_manager``: reads and changes resources in its
regions. ``category_manager``: likewise in its product categories. ``viewer``: reads only
(optionally limited to regions and/or categories; unscoped = the whole tenant). Principals
(``principals:*``) are managed by owners and admins only; managers and viewers may not
even list them.

**Scopes.** A region scope covers the region and its sub-regions by whole ``-`` segments
(``EU`` covers ``EU``, ``EU-DE``, ``EU-FR``; not ``EUR``, not ``US``); a category scope
is exact. Both are case-insensitive.

**The check** (``authorize``): an action is ``<resource>:<verb>`` (``rules:read``,
``templates:write``…); a resource has a scope (region or ANY, category or ANY). Verbs are
``read`` and ``write``, plus ``templates:send`` (a test send), checked like ``write``.
Branding (``branding:*``) is tenant-wide (scope ANY/ANY): every principal reads it, only
owners and admins change it. So are the tenant default quiet hours and the throttle
(``quiet_hours:*``, ``throttle:*``); a region's quiet hours have the scope (region, ANY).

* *read* is allowed when the resource's scope **overlaps** the principal's: a rule that
  applies in the principal's regions, including region-ANY rules, which apply there too;
* *write* is allowed only when the resource's scope lies **within** the principal's:
  whatever the resource affects must be the principal's to manage. Hence a rule whose
  region is ANY can be changed only by principals without a region limit (owner, admin,
  and a category manager for a rule of its own category); one with region and category
  ANY (tenant-wide) only by owners and admins.

So a regional manager for ``EU`` gets 403 reading or changing a ``US`` rule, a category
manager for ``electronics`` likewise for ``apparel``. Keys are ``rsnp_<prefix>_<secret>``
(distinct from tenant ingest keys, ``rsn_…``); only SHA-256 of a key is stored, as for
tenant keys (192 random bits: a slow KDF would add latency, not safety).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.access.keys import hash_key, key_matches, key_prefix, new_key
from return_notify.core.regions import (
    event_category,
    event_region,
    normalize_category,
    normalize_region,
    region_covers,
)
from return_notify.storage.models import ROLES, AdminPrincipal, PrincipalApiKey, Tenant

KEY_SCHEME = "rsnp"
OWNER, ADMIN, REGIONAL_MANAGER, CATEGORY_MANAGER, VIEWER = ROLES
ADMIN_ONLY_RESOURCES = frozenset({"principals"})
#: verbs beyond read/write, per resource; each is checked like ``write`` (viewers never;
#: scope *within* the principal's). ``templates:send``: a test send reaches a real address
#: through the real provider, so only those who may change that scope's templates may.
EXTRA_VERBS: dict[str, frozenset[str]] = {"templates": frozenset({"send"})}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}$")


class PrincipalError(ValueError):
    """A principal could not be created or changed (the message says why)."""


class PrincipalConflict(PrincipalError):
    """The tenant already has a principal of that name."""


@dataclass(frozen=True)
class Scope:
    """What a resource applies to: ``None`` = ANY region / category."""

    region: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated principal (``id`` None: an operator at the command line)."""

    id: int | None
    tenant_id: int
    tenant: str
    name: str
    role: str
    regions: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    key_prefix: str | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.id, self.name)

    def describe(self) -> str:
        scope = [f"regions {', '.join(self.regions)}"] if self.regions else []
        scope += [f"categories {', '.join(self.categories)}"] if self.categories else []
        return f"{self.role} {self.name!r}" + (f" ({'; '.join(scope)})" if scope else "")


def operator(tenant_id: int, tenant: str, name: str) -> Principal:
    """The command line acts as the tenant's owner (it holds the database credentials)."""
    return Principal(None, tenant_id, tenant, f"cli:{name}", OWNER)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


# ---------------------------------------------------------------- the check (pure) -------

def allowed_action(principal: Principal, action: str) -> Decision:
    """The role part of the check: may this role ``action`` at all (scope aside)?"""
    resource, _, verb = action.partition(":")
    who = principal.describe()
    if not resource or verb not in ("read", "write", *EXTRA_VERBS.get(resource, ())):
        return Decision(False, f"{who}: unknown action {action!r} (use <resource>:read|write)")
    if resource in ADMIN_ONLY_RESOURCES and principal.role not in (OWNER, ADMIN):
        return Decision(False, f"{who} may not {verb} {resource}: owners and admins only")
    if verb != "read" and principal.role == VIEWER:
        return Decision(False, f"{who} may not {verb} {resource}: viewers are read-only")
    return Decision(True, f"{who} may {verb} {resource}")


def _regions_ok(principal: Principal, region: str | None, verb: str) -> bool:
    if not principal.regions:
        return True
    if region is None:  # applies to every region: readable by all, writable by none scoped
        return verb == "read"
    if verb == "read":
        return any(region_covers(p, region) or region_covers(region, p)
                   for p in principal.regions)
    return any(region_covers(p, region) for p in principal.regions)


def _categories_ok(principal: Principal, category: str | None, verb: str) -> bool:
    if not principal.categories:
        return True
    if category is None:
        return verb == "read"
    return category in principal.categories


def authorize(principal: Principal, action: str, region: str | None,
              category: str | None) -> Decision:
    """May ``principal`` do ``action`` (``<resource>:read|write``) on a resource whose scope
    is ``region`` / ``category`` (``None`` = ANY)? The one place permissions are decided."""
    decision = allowed_action(principal, action)
    if not decision:
        return decision
    resource, _, verb = action.partition(":")
    reg, cat = event_region(region), event_category(category)
    where = f"region {reg or 'ANY'}, category {cat or 'ANY'}"
    if not _regions_ok(principal, reg, verb) or not _categories_ok(principal, cat, verb):
        return Decision(False, f"{principal.describe()} may not {verb} {resource} for {where}")
    return Decision(True, f"{principal.describe()} may {verb} {resource} for {where}")


def can_grant(principal: Principal, role: str) -> Decision:
    """May ``principal`` create a principal with ``role`` or manage its keys?"""
    if principal.role == OWNER or (principal.role == ADMIN and role not in (OWNER, ADMIN)):
        return Decision(True, f"{principal.describe()} may manage {role} principals")
    return Decision(False, f"{principal.describe()} may not manage {role} principals"
                    + (": owners only" if principal.role == ADMIN else ""))


def validate_principal(name: str, role: str, regions: Iterable[str],
                       categories: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Normalised (regions, categories) for a new principal; ``PrincipalError`` if invalid."""
    if not _NAME.fullmatch(name):
        raise PrincipalError(f"name {name!r}: letters, digits and _.@+- (at most 100)")
    if role not in ROLES:
        raise PrincipalError(f"role {role!r}: use {', '.join(ROLES)}")
    try:
        regs = tuple(dict.fromkeys(r for r in map(normalize_region, regions) if r))
        cats = tuple(dict.fromkeys(c for c in map(normalize_category, categories) if c))
    except ValueError as exc:
        raise PrincipalError(str(exc)) from None
    if role in (OWNER, ADMIN) and (regs or cats):
        raise PrincipalError(f"a {role} is tenant-wide: give no regions or categories")
    if role == REGIONAL_MANAGER and (not regs or cats):
        raise PrincipalError("a regional_manager needs one or more regions and no categories")
    if role == CATEGORY_MANAGER and (not cats or regs):
        raise PrincipalError("a category_manager needs one or more categories and no regions")
    return regs, cats


# ---------------------------------------------------------------- storage ----------------

def principal_dict(p: AdminPrincipal, key_prefixes: list[str] | None = None) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "role": p.role, "regions": list(p.regions or []),
            "categories": list(p.categories or []), "created_at": p.created_at,
            "created_by": p.created_by, "key_prefixes": key_prefixes or []}


def issue_key(session: Session, by: Principal, target: AdminPrincipal,
              name: str | None = None) -> str:
    """A new key for ``target``; returned once, stored hashed, audited by prefix only."""
    for _ in range(5):
        prefix, key = new_key(KEY_SCHEME)
        try:
            with session.begin_nested():
                session.add(PrincipalApiKey(principal_id=target.id, key_prefix=prefix,
                                            key_hash=hash_key(key), name=name))
        except IntegrityError:  # prefix collision: astronomically rare, try another
            continue
        record(session, target.tenant_id, by.actor, "principal.key_issue", "principals",
               target.id, after={"principal": target.name, "key_prefix": prefix, "name": name})
        return key
    raise RuntimeError("could not allocate a unique API key prefix")


def create_principal(session: Session, by: Principal, name: str, role: str,
                     regions: Iterable[str] = (), categories: Iterable[str] = (),
                     key_name: str | None = None) -> tuple[dict[str, Any], str]:
    """Create a principal of ``by``'s tenant with a first key: (principal, key)."""
    regs, cats = validate_principal(name, role, regions, categories)
    row = AdminPrincipal(tenant_id=by.tenant_id, name=name, role=role, regions=list(regs),
                         categories=list(cats), created_by=by.name)
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise PrincipalConflict(f"a principal named {name!r} already exists") from None
    session.refresh(row)
    snapshot = {k: v for k, v in principal_dict(row).items() if k != "key_prefixes"}
    record(session, by.tenant_id, by.actor, "principal.create", "principals", row.id,
           after=snapshot)
    key = issue_key(session, by, row, key_name)
    return principal_dict(row, [key.split("_")[1]]), key


def get_principal(session: Session, tenant_id: int, principal_id: int) -> AdminPrincipal | None:
    return session.execute(select(AdminPrincipal).where(
        AdminPrincipal.tenant_id == tenant_id, AdminPrincipal.id == principal_id)).scalar()


def list_principals(session: Session, tenant_id: int) -> list[dict[str, Any]]:
    rows = session.execute(select(AdminPrincipal).where(AdminPrincipal.tenant_id == tenant_id)
                           .order_by(AdminPrincipal.id)).scalars().all()
    keys = session.execute(select(PrincipalApiKey.principal_id, PrincipalApiKey.key_prefix).where(
        PrincipalApiKey.principal_id.in_([r.id for r in rows]),
        PrincipalApiKey.revoked_at.is_(None)).order_by(PrincipalApiKey.id)).all()
    prefixes: dict[int, list[str]] = {}
    for pid, prefix in keys:
        prefixes.setdefault(pid, []).append(prefix)
    return [principal_dict(r, prefixes.get(r.id)) for r in rows]


def revoke_key(session: Session, by: Principal, target: AdminPrincipal, prefix: str) -> bool:
    key = session.execute(select(PrincipalApiKey).where(
        PrincipalApiKey.principal_id == target.id, PrincipalApiKey.key_prefix == prefix,
        PrincipalApiKey.revoked_at.is_(None))).scalar()
    if key is None:
        return False
    key.revoked_at = session.execute(select(func.now())).scalar_one()
    record(session, target.tenant_id, by.actor, "principal.key_revoke", "principals", target.id,
           before={"principal": target.name, "key_prefix": prefix})
    return True


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal of an ``rsnp_…`` key, or None (unknown, revoked or malformed)."""
    prefix = key_prefix(key, KEY_SCHEME)
    if prefix is None:
        return None
    row = session.execute(
        select(PrincipalApiKey.key_hash, AdminPrincipal, Tenant.slug)
        .join(AdminPrincipal, AdminPrincipal.id == PrincipalApiKey.principal_id)
        .join(Tenant, Tenant.id == AdminPrincipal.tenant_id)
        .where(PrincipalApiKey.key_prefix == prefix, PrincipalApiKey.revoked_at.is_(None))
    ).first()
    if row is None or not key_matches(row[0], key):
        return None
    p: AdminPrincipal = row[1]
    return Principal(p.id, p.tenant_id, row[2], p.name, p.role, tuple(p.regions or ()),
                     tuple(p.categories or ()), prefix)
