"""Preview a tenant's message with sample data, and test-send it to a given address or number.

Both render exactly as the deliver pipeline would for this tenant (branding, active
overrides, locale fallback, render limits), optionally with unsaved *drafts* in place of
some parts, so an admin sees a change before saving it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.config.settings import Settings, get_settings
from return_notify.core.masking import mask
from return_notify.storage.tenants import find_tenant
from return_notify.templating.render import OverrideSource, Rendered, render
from return_notify.templating.samples import sample_context
from return_notify.templating.store import TenantTemplates, load_tenant_templates, render_limits

__all__ = ["TEST_PREFIX", "PreviewTenant", "preview", "resolve_tenant", "test_send"]

log = logging.getLogger(__name__)

TEST_PREFIX = "[TEST] "
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


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
            public_base_url: str = "https://returns.example.com") -> Rendered:
    """Render the tenant's ``channel`` message for ``milestone`` with sample data.

    Raises ``rendering.TemplateRenderError`` (a draft or stored override that fails)."""
    tt = tenant.templates
    ctx = sample_context(milestone, tenant.slug, tenant.name, locale,
                         tt.branding if tt else None, full, public_base_url)
    overrides: OverrideSource | None = tt.overrides if tt is not None and len(tt.overrides) else None
    if drafts:
        overrides = _Drafts(overrides, channel, drafts)
    return render(channel, milestone, ctx, locale, overrides, render_limits(),
                  sms_unicode=get_settings().sms_unicode)


def check_recipient(channel: str, to: str) -> str:
    """The recipient if it suits the channel; raises ``ValueError`` otherwise."""
    to = to.strip()
    if channel == "email" and _EMAIL.match(to):
        return to
    if channel == "sms" and _E164.match(to):
        return to
    if channel not in ("email", "sms"):
        raise ValueError("test sends go by email or sms; preview in-app messages instead")
    raise ValueError("an email address" if channel == "email" else
                     "a phone number in E.164 form, e.g. +14155550123")


def test_send(tenant: PreviewTenant, channel: str, milestone: str, to: str, settings: Settings,
              locale: str | None = None, provider: Channel | None = None,
              drafts: Mapping[str, str] | None = None) -> tuple[SendResult, Rendered]:
    """Send the previewed message (subject or text prefixed ``[TEST]``) to ``to`` through
    the configured provider (``channels.registry.build_channel``), or ``provider``.

    Raises ``ValueError`` (bad recipient), ``rendering.TemplateRenderError`` or the
    provider's ``DeliveryError``."""
    recipient = check_recipient(channel, to)
    rendered = preview(tenant, channel, milestone, locale, drafts,
                       public_base_url=settings.public_base_url)
    branding = tenant.templates.branding if tenant.templates else None
    metadata: dict[str, Any] = {"delivery_id": 0, "milestone": milestone, "test_send": True}
    if branding is not None and branding.sender_name:
        metadata["from_name"] = branding.sender_name
    message = OutboundMessage(
        delivery_id=0, channel=channel, recipient=recipient,
        text=rendered.text if channel == "email" else TEST_PREFIX + rendered.text,
        subject=TEST_PREFIX + rendered.subject if rendered.subject else None,
        html=rendered.html, tenant=tenant.slug, metadata=metadata,
    )
    owned = provider is None
    if provider is None:
        from return_notify.channels.registry import build_channel

        provider = build_channel(channel, settings)
    try:
        result = provider.send(message)
    finally:
        if owned:
            provider.close()
    log.info("test send of %s/%s for tenant %s to %s via %s", channel, milestone, tenant.slug,
             mask(recipient), result.provider)
    return result, rendered
