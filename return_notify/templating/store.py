"""Tenant templates in PostgreSQL: a per-process cache of each tenant's branding and active
overrides for the deliver pipeline, and the limits a tenant template renders under. Saving,
listing and rolling back versions: ``templating.versions``.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.config.settings import get_settings
from return_notify.templating.branding import (
    Branding,
    apply_branding,
    load_branding,
)
from return_notify.templating.isolation import ProcessLimits
from return_notify.templating.link_settings import InsightsSettings, load_insights
from return_notify.templating.links import LinkKey, MessageLinks, cached_link_key
from return_notify.templating.render import Rendered, render
from return_notify.templating.sandbox import RenderLimits
from return_notify.templating.scope import ANY_SCOPE, TemplateScope, TenantOverrides

__all__ = ["ANY_SCOPE", "TemplateScope", "TenantOverrides", "TenantTemplates",
           "forget_tenant_templates", "load_tenant_templates", "process_limits",
           "render_limits", "validation_budget_s"]


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


def _cache_ttl_s() -> float:
    return float(getattr(get_settings(), "template_cache_ttl_s", 60.0))


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


