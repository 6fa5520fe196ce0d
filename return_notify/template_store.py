"""Tenant templates in PostgreSQL: versioned overrides (save, list, history, roll back) and a
per-process cache of each tenant's branding and active overrides for the deliver pipeline.

The cache is checked once per batch with one indexed query (``tenant_branding.revision``,
bumped in the same transaction as every branding or override change), so a change made
through the API or CLI reaches every worker on its next batch; entries also expire after
``template_cache_ttl_s`` (60 s) to pick up rows edited by hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.branding import Branding, apply_branding, bump_revision, get_branding, load_branding
from return_notify.config.settings import get_settings
from return_notify.rendering import Rendered, render
from return_notify.storage.models_templates import ANY_MILESTONE
from return_notify.template_guard import RenderLimits
from return_notify.template_validation import OverrideKey, ValidationResult, validate_override

__all__ = ["OverrideRejected", "OverrideVersion", "TenantOverrides", "TenantTemplates",
           "forget_tenant_templates", "list_overrides", "load_tenant_templates",
           "override_history", "render_limits", "rollback_override", "save_override"]


def render_limits() -> RenderLimits:
    """Limits of a tenant template render, from ``RSN_TEMPLATE_RENDER_TIMEOUT_MS`` and
    ``RSN_TEMPLATE_MAX_OPS`` (defaults 250 ms and 200,000 operations per part)."""
    s = get_settings()
    return RenderLimits(timeout_s=float(getattr(s, "template_render_timeout_ms", 250)) / 1000.0,
                        max_ops=int(getattr(s, "template_max_ops", 200_000)))


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
    version: int
    active: bool
    created_by: str | None
    created_at: datetime
    note: str | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TenantOverrides:
    """A tenant's active overrides (``rendering.OverrideSource``)."""

    def __init__(self, sources: Mapping[tuple[str, str, str, str], str] | None = None) -> None:
        self._sources = dict(sources or {})
        self._channels = frozenset(k[0] for k in self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def covers(self, channel: str) -> bool:
        return channel in self._channels

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        found = self._sources.get((channel, milestone, part, locale))
        return found if found is not None else self._sources.get((channel, ANY_MILESTONE, part, locale))


@dataclass(frozen=True)
class TenantTemplates:
    """What a tenant's messages render with: its branding and active overrides."""

    tenant_id: int
    revision: int = 0
    branding: Branding | None = None
    overrides: TenantOverrides = field(default_factory=TenantOverrides)

    def enrich(self, context: dict[str, Any]) -> dict[str, Any]:
        """Fill ``context["tenant"]`` with the branding (in place)."""
        return apply_branding(context, self.branding)

    def options(self) -> dict[str, Any]:
        """The ``overrides`` and ``limits`` keyword arguments of ``rendering.render``."""
        return {"overrides": self.overrides if len(self.overrides) else None,
                "limits": render_limits()}

    def render(self, channel: str, milestone: str, context: dict[str, Any],
               locale: str | None = None) -> Rendered:
        """Brand ``context`` and render; raises ``rendering.TemplateRenderError``."""
        return render(channel, milestone, self.enrich(context), locale, **self.options())


# --------------------------------------------------------------------------- cache

_lock = threading.Lock()
_cache: dict[int, tuple[float, TenantTemplates]] = {}

_REVISIONS = text("SELECT tenant_id, revision FROM tenant_branding "
                  "WHERE tenant_id = ANY(CAST(:ids AS int[]))")
_ACTIVE = text("SELECT tenant_id, channel, milestone, part, locale, source FROM template_overrides "
               "WHERE active AND tenant_id = ANY(CAST(:ids AS int[]))")


def load_tenant_templates(session: Session, tenant_ids: Iterable[int], fresh: bool = False
                          ) -> dict[int, TenantTemplates]:
    """Branding and active overrides of these tenants, from the cache when still current.

    One query when nothing changed; three when some tenant's revision moved (or ``fresh``).
    """
    ids = sorted(set(tenant_ids))
    if not ids:
        return {}
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
        sources: dict[int, dict[tuple[str, str, str, str], str]] = {tid: {} for tid in stale}
        for r in session.execute(_ACTIVE, {"ids": stale}).all():
            sources[int(r.tenant_id)][(r.channel, r.milestone, r.part, r.locale)] = r.source
        with _lock:
            for tid in stale:
                branding = brandings.get(tid)
                entry = TenantTemplates(tid, branding.revision if branding else 0, branding,
                                        TenantOverrides(sources[tid]))
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

_COLUMNS = "id, channel, milestone, part, locale, version, active, created_by, created_at, note"
_KEY_SQL = ("tenant_id = :t AND channel = :channel AND milestone = :milestone AND part = :part "
            "AND locale = :locale")


def _key_params(tenant_id: int, key: OverrideKey) -> dict[str, Any]:
    return {"t": tenant_id, "channel": key.channel, "milestone": key.milestone, "part": key.part,
            "locale": key.locale}


def _tenant_slug(session: Session, tenant_id: int) -> str:
    slug = session.execute(text("SELECT slug FROM tenants WHERE id = :t"), {"t": tenant_id}).scalar()
    return str(slug or "tenant")


def save_override(session: Session, tenant_id: int, key: OverrideKey, source: str,
                  actor: str | None = None, note: str | None = None, activate: bool = True
                  ) -> tuple[OverrideVersion, ValidationResult]:
    """Validate ``source`` and store it as the next version of ``key`` (active unless told
    otherwise). Raises :class:`OverrideRejected` with every problem found."""
    result = validate_override(key, source, get_branding(session, tenant_id),
                               _tenant_slug(session, tenant_id), render_limits())
    if not result.ok:
        raise OverrideRejected(result)
    bump_revision(session, tenant_id)  # row lock: one save per tenant at a time
    params = _key_params(tenant_id, key)
    version = int(session.execute(text(
        f"SELECT coalesce(max(version), 0) + 1 FROM template_overrides WHERE {_KEY_SQL}"),
        params).scalar_one())
    if activate:
        session.execute(text(f"UPDATE template_overrides SET active = false WHERE {_KEY_SQL} "
                             "AND active"), params)
    row = session.execute(text(f"""
        INSERT INTO template_overrides (tenant_id, channel, milestone, part, locale, version,
                                        source, note, created_by, active)
        VALUES (:t, :channel, :milestone, :part, :locale, :version, :source, :note, :actor,
                :active)
        RETURNING {_COLUMNS}, source
    """), {**params, "version": version, "source": source, "note": note, "actor": actor,
           "active": activate}).mappings().one()
    forget_tenant_templates(tenant_id)
    return OverrideVersion(**dict(row)), result


def list_overrides(session: Session, tenant_id: int, include_inactive: bool = False,
                   with_source: bool = False) -> list[OverrideVersion]:
    """The tenant's active overrides (or every version), by key then version."""
    where = "tenant_id = :t" + ("" if include_inactive else " AND active")
    cols = _COLUMNS + (", source" if with_source else "")
    rows = session.execute(text(
        f"SELECT {cols} FROM template_overrides WHERE {where} "
        "ORDER BY channel, milestone, part, locale, version"), {"t": tenant_id}).mappings().all()
    return [OverrideVersion(**dict(r)) for r in rows]


def override_history(session: Session, tenant_id: int, key: OverrideKey) -> list[OverrideVersion]:
    """Every version of ``key``, newest first, with its source."""
    rows = session.execute(text(
        f"SELECT {_COLUMNS}, source FROM template_overrides WHERE {_KEY_SQL} "
        "ORDER BY version DESC"), _key_params(tenant_id, key)).mappings().all()
    return [OverrideVersion(**dict(r)) for r in rows]


def rollback_override(session: Session, tenant_id: int, key: OverrideKey, version: int
                      ) -> OverrideVersion | None:
    """Make ``version`` the active one again (re-validated first: the rules may have grown
    stricter since); ``0`` goes back to the packaged default. Raises ``LookupError`` for an
    unknown version and :class:`OverrideRejected` when it no longer validates."""
    params = _key_params(tenant_id, key)
    target = None
    if version:
        found = session.execute(text(
            f"SELECT {_COLUMNS}, source FROM template_overrides WHERE {_KEY_SQL} "
            "AND version = :v"), {**params, "v": version}).mappings().first()
        if found is None:
            raise LookupError(f"{key.label()} has no version {version}")
        target = OverrideVersion(**dict(found))
        result = validate_override(key, target.source or "", get_branding(session, tenant_id),
                                   _tenant_slug(session, tenant_id), render_limits())
        if not result.ok:
            raise OverrideRejected(result)
    bump_revision(session, tenant_id)
    session.execute(text(f"UPDATE template_overrides SET active = false WHERE {_KEY_SQL} AND active"),
                    params)
    if target is not None:
        session.execute(text("UPDATE template_overrides SET active = true WHERE id = :id"),
                        {"id": target.id})
        target = OverrideVersion(**{**target.as_dict(), "active": True})
    forget_tenant_templates(tenant_id)
    return target
