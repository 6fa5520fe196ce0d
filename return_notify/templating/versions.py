"""Versioned tenant template overrides in PostgreSQL: save (validated first), list, history
and roll back, and the audited branding update.

An override's key is (channel, milestone, part, locale) plus a :class:`TemplateScope`
(region, product category, variant). Every save and rollback bumps the tenant's template
revision (workers reload on their next batch, ``templating.store``) and is written to the
audit log (resource ``templates``, with the override's region and category) in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.templating.branding import (
    Branding,
    bump_revision,
    get_branding,
)
from return_notify.templating.sandbox import RenderLimits
from return_notify.templating.scope import ANY_SCOPE, TemplateScope
from return_notify.templating.store import (
    forget_tenant_templates,
    render_limits,
    validation_budget_s,
)
from return_notify.templating.validation import OverrideKey, ValidationResult, validate_override

__all__ = ["OverrideRejected", "OverrideVersion", "Validator", "list_overrides",
           "override_history", "rollback_override", "save_branding_audited", "save_override"]


Validator = Callable[[OverrideKey, str, Branding | None, str, RenderLimits], ValidationResult]
"""How a template is validated before it is stored (``validate_override``, or the same in a
limited child process: ``pipeline.preview.validate_isolated``)."""


def _validate_here(key: OverrideKey, source: str, branding: Branding | None, slug: str,
                   limits: RenderLimits) -> ValidationResult:
    return validate_override(key, source, branding, slug, limits,
                             total_s=validation_budget_s())


class OverrideRejected(ValueError):
    """The template failed validation; ``result.problems`` says why, one line per problem."""

    def __init__(self, result: ValidationResult) -> None:
        super().__init__("; ".join(result.problems))
        self.result = result


@dataclass(frozen=True)
class OverrideVersion:
    """One stored version of an override."""

    id: int
    channel: str
    milestone: str
    part: str
    locale: str
    region: str | None
    category: str | None
    variant: str | None
    version: int
    active: bool
    created_by: str | None
    created_at: datetime
    note: str | None = None
    source: str | None = None

    @property
    def scope(self) -> TemplateScope:
        return TemplateScope(self.region, self.category, self.variant)

    def label(self) -> str:
        return (f"{self.channel}/{self.milestone}.{self.part} [{self.locale}] "
                f"({self.scope.label()})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- versions

_COLUMNS = ("id, channel, milestone, part, locale, region, product_category AS category, variant, "
            "version, active, created_by, created_at, note")
_KEY_SQL = ("tenant_id = :t AND channel = :channel AND milestone = :milestone AND part = :part "
            "AND locale = :locale AND coalesce(region, '') = :region "
            "AND coalesce(product_category, '') = :category AND coalesce(variant, '') = :variant")


def _key_params(tenant_id: int, key: OverrideKey, scope: TemplateScope) -> dict[str, Any]:
    return {"t": tenant_id, "channel": key.channel, "milestone": key.milestone, "part": key.part,
            "locale": key.locale, "region": scope.region or "", "category": scope.category or "",
            "variant": scope.variant or ""}


def _tenant_slug(session: Session, tenant_id: int) -> str:
    slug = session.execute(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id}).scalar()
    return str(slug or "tenant")


def _actor(actor: Actor | str | None) -> Actor:
    if isinstance(actor, Actor):
        return actor
    return Actor(None, actor or "system")


def _active(session: Session, params: dict[str, Any]) -> OverrideVersion | None:
    row = session.execute(text(
        f"SELECT {_COLUMNS}, source FROM template_overrides WHERE {_KEY_SQL} AND active"),
        params).mappings().first()
    return OverrideVersion(**dict(row)) if row is not None else None


def _audit(session: Session, tenant_id: int, actor: Actor, action: str, key: OverrideKey,
           scope: TemplateScope, before: OverrideVersion | None,
           after: OverrideVersion | None, resource_id: int | None) -> None:
    def snap(v: OverrideVersion | None) -> dict[str, Any] | None:
        if v is None:
            return None
        d = v.as_dict()
        d.pop("created_at", None)
        return d

    after_d = snap(after)
    if after is None and action == "template.rollback":
        after_d = {"channel": key.channel, "milestone": key.milestone, "part": key.part,
                   "locale": key.locale, "region": scope.region, "category": scope.category,
                   "variant": scope.variant, "version": 0, "active": False}
    record(session, tenant_id, actor, action, "templates", resource_id, region=scope.region,
           category=scope.category, before=snap(before), after=after_d)


def save_branding_audited(session: Session, tenant_id: int, update: Any,
                          actor: Actor | str | None = None) -> Branding:
    """``branding.save_branding`` plus its audit entry (``branding.update``, tenant-wide)."""
    from return_notify.templating.branding import BRANDING_FIELDS, save_branding

    who = _actor(actor)
    old = get_branding(session, tenant_id)
    new = save_branding(session, tenant_id, update, who.name)
    record(session, tenant_id, who, "branding.update", "branding", None,
           before={k: getattr(old, k) for k in BRANDING_FIELDS},
           after={k: getattr(new, k) for k in BRANDING_FIELDS})
    return new


def save_override(session: Session, tenant_id: int, key: OverrideKey, source: str,
                  actor: Actor | str | None = None, note: str | None = None,
                  activate: bool = True, scope: TemplateScope = ANY_SCOPE,
                  validate: Validator = _validate_here,
                  ) -> tuple[OverrideVersion, ValidationResult]:
    """Validate ``source`` (with ``validate``) and store it as the next version of ``key`` in
    ``scope`` (active unless told otherwise), audited as ``template.create``. Raises
    :class:`OverrideRejected` with every problem found."""
    result = validate(key, source, get_branding(session, tenant_id),
                      _tenant_slug(session, tenant_id), render_limits())
    if not result.ok:
        raise OverrideRejected(result)
    who = _actor(actor)
    bump_revision(session, tenant_id)  # row lock: one save per tenant at a time
    params = _key_params(tenant_id, key, scope)
    version = int(session.execute(text(
        f"SELECT coalesce(max(version), 0) + 1 FROM template_overrides WHERE {_KEY_SQL}"),
        params).scalar_one())
    before = _active(session, params)
    if activate:
        session.execute(text(f"UPDATE template_overrides SET active = false WHERE {_KEY_SQL} "
                             "AND active"), params)
    row = session.execute(text(f"""
        INSERT INTO template_overrides (tenant_id, channel, milestone, part, locale, region,
                                        product_category, variant, version, source, note,
                                        created_by, active)
        VALUES (:t, :channel, :milestone, :part, :locale, NULLIF(:region, ''),
                NULLIF(:category, ''), NULLIF(:variant, ''), :version, :source, :note, :actor,
                :active)
        RETURNING {_COLUMNS}, source
    """), {**params, "version": version, "source": source, "note": note, "actor": who.name,
           "active": activate}).mappings().one()
    saved = OverrideVersion(**dict(row))
    _audit(session, tenant_id, who, "template.create", key, scope, before, saved, saved.id)
    forget_tenant_templates(tenant_id)
    return saved, result


def list_overrides(session: Session, tenant_id: int, include_inactive: bool = False,
                   with_source: bool = False) -> list[OverrideVersion]:
    """The tenant's active overrides (or every version), by key, scope, then version."""
    where = "tenant_id = :t" + ("" if include_inactive else " AND active")
    cols = _COLUMNS + (", source" if with_source else "")
    rows = session.execute(text(
        f"SELECT {cols} FROM template_overrides WHERE {where} "
        "ORDER BY channel, milestone, part, locale, region NULLS FIRST, "
        "product_category NULLS FIRST, variant NULLS FIRST, version"),
        {"t": tenant_id}).mappings().all()
    return [OverrideVersion(**dict(r)) for r in rows]


def override_history(session: Session, tenant_id: int, key: OverrideKey,
                     scope: TemplateScope = ANY_SCOPE) -> list[OverrideVersion]:
    """Every version of ``key`` in ``scope``, newest first, with its source."""
    rows = session.execute(text(
        f"SELECT {_COLUMNS}, source FROM template_overrides WHERE {_KEY_SQL} "
        "ORDER BY version DESC"), _key_params(tenant_id, key, scope)).mappings().all()
    return [OverrideVersion(**dict(r)) for r in rows]


def rollback_override(session: Session, tenant_id: int, key: OverrideKey, version: int,
                      scope: TemplateScope = ANY_SCOPE, actor: Actor | str | None = None,
                      validate: Validator = _validate_here) -> OverrideVersion | None:
    """Make ``version`` of ``key`` in ``scope`` the active one again (re-validated first: the
    rules may have grown stricter since); ``0`` leaves no active version, so the next
    candidate (a less specific scope, the default variant, the packaged template) applies.
    Audited as ``template.rollback``. Raises ``LookupError`` for an unknown version and
    :class:`OverrideRejected` when it no longer validates."""
    params = _key_params(tenant_id, key, scope)
    target = None
    if version:
        found = session.execute(text(
            f"SELECT {_COLUMNS}, source FROM template_overrides WHERE {_KEY_SQL} "
            "AND version = :v"), {**params, "v": version}).mappings().first()
        if found is None:
            where = "" if scope == ANY_SCOPE else f" ({scope.label()})"
            raise LookupError(f"{key.label()}{where} has no version {version}")
        target = OverrideVersion(**dict(found))
        result = validate(key, target.source or "", get_branding(session, tenant_id),
                          _tenant_slug(session, tenant_id), render_limits())
        if not result.ok:
            raise OverrideRejected(result)
    bump_revision(session, tenant_id)
    before = _active(session, params)
    session.execute(text(f"UPDATE template_overrides SET active = false WHERE {_KEY_SQL} AND active"),
                    params)
    if target is not None:
        session.execute(text("UPDATE template_overrides SET active = true WHERE id = :id"),
                        {"id": target.id})
        target = OverrideVersion(**{**target.as_dict(), "active": True})
    resource = target.id if target is not None else before.id if before is not None else None
    _audit(session, tenant_id, _actor(actor), "template.rollback", key, scope, before, target,
           resource)
    forget_tenant_templates(tenant_id)
    return target
