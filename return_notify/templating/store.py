"""Tenant templates in PostgreSQL: versioned overrides (save, list, history, roll back) and a
per-process cache of each tenant's branding and active overrides for the deliver pipeline.

An override's key is (channel, milestone, part, locale) plus a :class:`TemplateScope`
(region, product category, variant); which one renders a delivery's message is decided by
``template_scope`` (locale, then variant, then scope specificity, then milestone; see its
docstring). Every save and rollback is written to the audit log (resource ``templates``,
with the override's region and category) in the same transaction.

The cache is checked once per batch with one indexed query (``tenant_branding.revision``,
bumped in the same transaction as every branding or override change), so a change made
through the API or CLI reaches every worker on its next batch; entries also expire after
``template_cache_ttl_s`` (60 s) to pick up rows edited by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.access.audit import Actor, record
from return_notify.config.settings import get_settings
from return_notify.templating.branding import (
    Branding,
    apply_branding,
    bump_revision,
    get_branding,
    load_branding,
)
from return_notify.templating.isolation import ProcessLimits
from return_notify.templating.link_settings import InsightsSettings, load_insights
from return_notify.templating.links import LinkKey, MessageLinks, cached_link_key
from return_notify.templating.render import Rendered, render
from return_notify.templating.sandbox import RenderLimits
from return_notify.templating.scope import ANY_SCOPE, TemplateScope, TenantOverrides
from return_notify.templating.validation import OverrideKey, ValidationResult, validate_override

__all__ = ["ANY_SCOPE", "OverrideRejected", "OverrideVersion", "TemplateScope",
           "TenantOverrides", "TenantTemplates", "forget_tenant_templates", "list_overrides",
           "load_tenant_templates", "override_history", "process_limits", "render_limits",
           "rollback_override",
           "save_branding_audited", "save_override"]


def render_limits() -> RenderLimits:
    """Limits of a tenant template render, from ``RSN_TEMPLATE_RENDER_TIMEOUT_MS`` and
    ``RSN_TEMPLATE_MAX_OPS`` (defaults 250 ms and 200,000 operations per part)."""
    s = get_settings()
    return RenderLimits(timeout_s=float(getattr(s, "template_render_timeout_ms", 250)) / 1000.0,
                        max_ops=int(getattr(s, "template_max_ops", 200_000)))


def process_limits() -> ProcessLimits:
    """Hard limits of an isolated preview or validation (``RSN_TEMPLATE_SANDBOX_*``)."""
    s = get_settings()
    return ProcessLimits(cpu_s=s.template_sandbox_cpu_s, memory_mb=s.template_sandbox_memory_mb,
                         wall_s=s.template_sandbox_wall_s,
                         concurrency=s.template_sandbox_concurrency)


def validation_budget_s() -> float:
    """``RSN_TEMPLATE_VALIDATION_BUDGET_MS`` in seconds."""
    return get_settings().template_validation_budget_ms / 1000.0


Validator = Callable[[OverrideKey, str, Branding | None, str, RenderLimits], ValidationResult]
"""How a template is validated before it is stored (``validate_override``, or the same in a
limited child process: ``pipeline.preview.validate_isolated``)."""


def _validate_here(key: OverrideKey, source: str, branding: Branding | None, slug: str,
                   limits: RenderLimits) -> ValidationResult:
    return validate_override(key, source, branding, slug, limits,
                             total_s=validation_budget_s())


def _cache_ttl_s() -> float:
    return float(getattr(get_settings(), "template_cache_ttl_s", 60.0))


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


@dataclass(frozen=True)
class TenantTemplates:
    """What a tenant's messages render with: its branding and active overrides.

    ``overrides`` is the ANY-scope, default-variant view unless :meth:`scoped` chose another.
    """

    tenant_id: int
    revision: int = 0
    branding: Branding | None = None
    overrides: TenantOverrides = field(default_factory=TenantOverrides)
    #: the tenant's tracking and survey switches (``link_settings``)
    insights: InsightsSettings = field(default_factory=InsightsSettings)

    def enrich(self, context: dict[str, Any]) -> dict[str, Any]:
        """Fill ``context["tenant"]`` with the branding (in place)."""
        return apply_branding(context, self.branding)

    def scoped(self, region: str | None = None, category: str | None = None,
               variant: str | None = None) -> TenantTemplates:
        """The same tenant as seen by an event of ``region``/``category`` whose rule names
        template ``variant`` (raw values; ``None`` = no region / category / the default)."""
        view = self.overrides.scoped(region, category, variant)
        return self if view is self.overrides else replace(self, overrides=view)

    def options(self, region: str | None = None, category: str | None = None,
                variant: str | None = None) -> dict[str, Any]:
        """The ``overrides``, ``limits`` and ``links`` keyword arguments of
        ``rendering.render`` for a message of that event scope and rule template (see
        :meth:`scoped`)."""
        view = self.overrides.scoped(region, category, variant)
        return {"overrides": view if len(view) else None, "limits": render_limits(),
                "links": self.links()}

    def links(self) -> MessageLinks | None:
        """The tenant's status, tracked and rating links, or None (no ``RSN_LINK_SECRET``)."""
        key = _link_key()
        if key is None:
            return None
        return MessageLinks(self.tenant_id, get_settings().public_base_url, key,
                            self.insights.tracking, self.insights.rated_milestones())

    def render(self, channel: str, milestone: str, context: dict[str, Any],
               locale: str | None = None, region: str | None = None,
               category: str | None = None, variant: str | None = None) -> Rendered:
        """Brand ``context`` and render; raises ``rendering.TemplateRenderError``."""
        return render(channel, milestone, self.enrich(context), locale,
                      **self.options(region, category, variant))


def _link_key() -> LinkKey | None:
    secret = get_settings().link_secret
    return cached_link_key(secret.get_secret_value()) if secret is not None else None


# --------------------------------------------------------------------------- cache

_lock = threading.Lock()
_cache: dict[int, tuple[float, TenantTemplates]] = {}

_REVISIONS = text("SELECT tenant_id, revision FROM tenant_branding "
                  "WHERE tenant_id = ANY(CAST(:ids AS int[]))")
_ACTIVE = text("SELECT tenant_id, channel, milestone, part, locale, variant, region, "
               "product_category, source FROM template_overrides "
               "WHERE active AND tenant_id = ANY(CAST(:ids AS int[]))")


def load_tenant_templates(session: Session, tenant_ids: Iterable[int], fresh: bool = False,
                          revisions: Mapping[int, int] | None = None,
                          ) -> dict[int, TenantTemplates]:
    """Branding and active overrides of these tenants, from the cache when still current.

    One query when nothing changed (none when the caller read the ``revisions`` already,
    in this transaction: the deliver claim does); three when some tenant's revision moved
    (or ``fresh``).
    """
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
    if revisions is None or any(t not in revisions for t in ids):
        revisions = {int(t): int(r) for t, r in session.execute(_REVISIONS, {"ids": ids}).all()}
    now = time.monotonic()
    ttl = _cache_ttl_s()
    out: dict[int, TenantTemplates] = {}
    with _lock:
        for tid in ids:
            hit = _cache.get(tid)
            if (not fresh and hit is not None and now - hit[0] < ttl
                    and hit[1].revision == revisions.get(tid, 0)):
                out[tid] = hit[1]
    stale = [tid for tid in ids if tid not in out]
    if stale:
        brandings = load_branding(session, stale)
        switches = load_insights(session, stale)
        sources: dict[int, dict[tuple[Any, ...], str]] = {tid: {} for tid in stale}
        for r in session.execute(_ACTIVE, {"ids": stale}).all():
            sources[int(r.tenant_id)][(r.channel, r.milestone, r.part, r.locale, r.variant,
                                       r.region, r.product_category)] = r.source
        with _lock:
            for tid in stale:
                branding = brandings.get(tid)
                entry = TenantTemplates(tid, branding.revision if branding else 0, branding,
                                        TenantOverrides(sources[tid]), switches[tid])
                _cache[tid] = (now, entry)
                out[tid] = entry
    return out


def forget_tenant_templates(tenant_id: int | None = None) -> None:
    """Drop cached entries (one tenant, or all): tests, and after a local change."""
    with _lock:
        if tenant_id is None:
            _cache.clear()
        else:
            _cache.pop(tenant_id, None)


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
