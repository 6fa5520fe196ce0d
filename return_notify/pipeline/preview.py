"""Preview a tenant's message with sample data, in this process or in a limited child.

A preview renders exactly as the deliver pipeline would for this tenant (branding, active
overrides, locale fallback, render limits), optionally with unsaved *drafts* in place of
some parts, so an admin sees a change before saving it. The API runs previews and
validations through :func:`preview_isolated` and :func:`validate_isolated`: a child process
with hard CPU, memory and time limits (``templating.isolation``), so what anyone with a
viewer key may ask for costs the API process nothing but a wait.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from return_notify.config.settings import get_settings
from return_notify.storage.tenants import find_tenant
from return_notify.templating.branding import Branding
from return_notify.templating.errors import TemplateRenderError
from return_notify.templating.isolation import run_isolated
from return_notify.templating.render import OverrideSource, Rendered, render
from return_notify.templating.samples import sample_context
from return_notify.templating.sandbox import RenderLimits
from return_notify.templating.store import (
    TenantTemplates,
    load_tenant_templates,
    process_limits,
    render_limits,
    validation_budget_s,
)
from return_notify.templating.validation import OverrideKey, ValidationResult, validate_override

__all__ = ["PreviewTenant", "preview", "preview_isolated", "resolve_tenant",
           "validate_isolated"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewTenant:
    slug: str
    name: str | None = None
    templates: TenantTemplates | None = None


def resolve_tenant(session: Session | None, slug: str) -> PreviewTenant:
    """The tenant's stored branding and overrides (fresh), or defaults without a database
    or for an unknown tenant."""
    if session is None:
        return PreviewTenant(slug)
    row = find_tenant(session, slug)
    if row is None:
        return PreviewTenant(slug)
    return PreviewTenant(slug, row.name, load_tenant_templates(session, [row.id], fresh=True)[row.id])


class _Drafts:
    """Unsaved parts of one channel in front of the tenant's stored overrides."""

    def __init__(self, base: OverrideSource | None, channel: str, drafts: Mapping[str, str]) -> None:
        self.base, self.channel, self.drafts = base, channel, dict(drafts)

    def covers(self, channel: str) -> bool:
        return channel == self.channel or (self.base is not None and self.base.covers(channel))

    def find(self, channel: str, milestone: str, part: str, locale: str) -> str | None:
        if channel == self.channel and part in self.drafts:
            return self.drafts[part]
        return self.base.find(channel, milestone, part, locale) if self.base is not None else None


def preview(tenant: PreviewTenant, channel: str, milestone: str, locale: str | None = None,
            drafts: Mapping[str, str] | None = None, full: bool = True,
            public_base_url: str = "https://returns.example.com",
            limits: RenderLimits | None = None, sms_unicode: str | None = None) -> Rendered:
    """Render the tenant's ``channel`` message for ``milestone`` with sample data
    (``limits`` and ``sms_unicode`` default to the settings').

    Raises ``rendering.TemplateRenderError`` (a draft or stored override that fails)."""
    tt = tenant.templates
    ctx = sample_context(milestone, tenant.slug, tenant.name, locale,
                         tt.branding if tt else None, full, public_base_url)
    overrides: OverrideSource | None = tt.overrides if tt is not None and len(tt.overrides) else None
    if drafts:
        overrides = _Drafts(overrides, channel, drafts)
    return render(channel, milestone, ctx, locale, overrides, limits or render_limits(),
                  sms_unicode=sms_unicode or get_settings().sms_unicode)


def preview_isolated(tenant: PreviewTenant, channel: str, milestone: str,
                     locale: str | None = None, drafts: Mapping[str, str] | None = None,
                     full: bool = True, public_base_url: str = "https://returns.example.com"
                     ) -> Rendered:
    """:func:`preview` in a child process under ``RSN_TEMPLATE_SANDBOX_*`` limits (every
    setting the child needs is passed to it). Raises ``TemplateRenderError`` for a template
    problem or an exceeded limit, ``isolation.SandboxBusy`` when every slot stays busy."""
    return run_isolated(preview, tenant, channel, milestone, locale,
                        dict(drafts) if drafts else None, full, public_base_url,
                        render_limits(), get_settings().sms_unicode,
                        process_limits=process_limits())


def validate_isolated(key: OverrideKey, source: str, branding: Branding | None,
                      tenant_slug: str, limits: RenderLimits) -> ValidationResult:
    """``validate_override`` in a child process under ``RSN_TEMPLATE_SANDBOX_*`` limits; an
    exceeded limit is a problem of the template. ``isolation.SandboxBusy`` when every slot
    stays busy. A ``templating.versions.Validator``."""
    try:
        return run_isolated(validate_override, key, source, branding, tenant_slug, limits,
                            validation_budget_s(), process_limits=process_limits())
    except TemplateRenderError as exc:
        return ValidationResult(ok=False, problems=[exc.reason])
