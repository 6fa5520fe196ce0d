"""Template test sends, and the verification codes that open an address to them.

A test send renders a tenant's message (branding, active overrides, optional drafts) with
sample data and sends it, marked as a test, through the configured provider. It goes only
to a **verified test recipient** of the tenant (``policy.verified_recipients``) and never to
an address on the suppression list (an unsubscribe, a bounce, an SMS STOP): both are
checked before every send, whoever asks (API or command line). Marked as a test: the
subject (email) or text (SMS) starts with ``[TEST]`` and an email carries
``X-Return-Notify-Test: true``. The API also rate-limits them per principal and tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.config.settings import Settings
from return_notify.core.masking import mask
from return_notify.pipeline.presend import sms_sender
from return_notify.pipeline.preview import PreviewTenant, preview
from return_notify.policy.suppression import is_suppressed
from return_notify.policy.verified_recipients import is_verified, normalise
from return_notify.storage.tenants import find_tenant_id
from return_notify.templating.render import Rendered

__all__ = ["TEST_HEADER", "TEST_PREFIX", "TestSendRefused", "check_test_recipient",
           "send_verification_code", "test_send"]

log = logging.getLogger(__name__)

TEST_PREFIX = "[TEST] "
TEST_HEADER = "X-Return-Notify-Test"


class TestSendRefused(ValueError):
    """The recipient may not get a test message; the message says why and what to do."""

    __test__ = False  # not a pytest test class, whatever its name


def check_test_recipient(session: Session, tenant: str, channel: str, to: str,
                         settings: Settings) -> str:
    """The normalised recipient, if ``tenant`` may send it a test message on ``channel``;
    raises :class:`TestSendRefused` when it may not (unverified, suppressed) and
    ``ValueError`` when ``to`` is no address for ``channel``."""
    if channel not in ("email", "sms"):
        raise TestSendRefused("test sends go by email or sms; preview in-app messages instead")
    address = normalise(channel, to)  # ValueError: not an address at all
    tenant_id = find_tenant_id(session, tenant)
    if tenant_id is None or not is_verified(session, tenant_id, channel, address):
        raise TestSendRefused(
            f"{mask(address)} is not a verified test recipient of this tenant: add it first "
            "(POST /v1/admin/test-recipients, then .../verify with the code it receives; or "
            "`return-notify test-recipients add`)")
    reason = is_suppressed(session, tenant_id, channel, address,
                           sender=sms_sender(settings) if channel == "sms" else None)
    if reason is not None:
        raise TestSendRefused(f"{mask(address)} is on the suppression list ({reason}): it gets "
                              "no message, tests included")
    return address


def _provider(channel: str, settings: Settings, provider: Channel | None) -> tuple[Channel, bool]:
    if provider is not None:
        return provider, False
    from return_notify.channels.registry import build_channel

    return build_channel(channel, settings), True


def test_send(session: Session, tenant: PreviewTenant, channel: str, milestone: str, to: str,
              settings: Settings, locale: str | None = None, provider: Channel | None = None,
              drafts: Mapping[str, str] | None = None,
              renderer: Callable[..., Rendered] = preview) -> tuple[SendResult, Rendered]:
    """Send the previewed message, marked as a test, to ``to`` through the configured
    provider (or ``provider``); ``renderer`` renders it (``preview``, or the isolated one).

    Raises :class:`TestSendRefused`, ``rendering.TemplateRenderError`` or the provider's
    ``DeliveryError``."""
    recipient = check_test_recipient(session, tenant.slug, channel, to, settings)
    rendered = renderer(tenant, channel, milestone, locale, drafts,
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
        headers={TEST_HEADER: "true"} if channel == "email" else {},
    )
    sender, owned = _provider(channel, settings, provider)
    try:
        result = sender.send(message)
    finally:
        if owned:
            sender.close()
    log.info("test send of %s/%s for tenant %s to %s via %s", channel, milestone, tenant.slug,
             mask(recipient), result.provider)
    return result, rendered


def send_verification_code(tenant: str, channel: str, address: str, code: str,
                           settings: Settings, provider: Channel | None = None) -> SendResult:
    """Send ``code`` to ``address`` (already normalised): a fixed text, nothing the tenant
    wrote, so a verification cannot carry anyone's content."""
    text = (f"{code} is the code that lets {tenant} send template test messages to this "
            f"{'address' if channel == 'email' else 'number'}. It expires in 15 minutes. "
            "If you did not expect it, ignore this message.")
    message = OutboundMessage(
        delivery_id=0, channel=channel, recipient=address, text=text,
        subject=f"Verification code for {tenant} test messages" if channel == "email" else None,
        tenant=tenant, metadata={"delivery_id": 0, "verification": True},
        headers={TEST_HEADER: "true"} if channel == "email" else {},
    )
    sender, owned = _provider(channel, settings, provider)
    try:
        result = sender.send(message)
    finally:
        if owned:
            sender.close()
    log.info("test recipient verification code for tenant %s sent to %s via %s", tenant,
             mask(address), result.provider)
    return result


test_send.__test__ = False  # type: ignore[attr-defined]  # a function, not a pytest test
