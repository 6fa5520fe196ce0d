"""Sample events for previews, test sends and override validation: one rich and one minimal
payload per milestone, as a producer would send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from return_notify.events import Milestone
from return_notify.templating.branding import Branding, apply_branding
from return_notify.templating.context import build_context
from return_notify.templating.i18n import canonical_locale, language_of

__all__ = ["MILESTONES", "SAMPLE_RETURN_ID", "sample_context", "sample_payload"]

MILESTONES = tuple(m.value for m in Milestone)
SAMPLE_RETURN_ID = "RMA-100042"
SAMPLE_BASE_URL = "https://returns.example.com"
_CURRENCY = {"en-US": "USD", "en-GB": "GBP", "en-CA": "CAD", "en-AU": "AUD", "fr-CA": "CAD",
             "es-MX": "MXN", "de-CH": "CHF", "fr-CH": "CHF"}


def _currency(locale: str | None) -> str:
    tag = canonical_locale(locale) or "en-US"
    return _CURRENCY.get(tag) or ("EUR" if language_of(tag) in ("de", "fr", "es") else "USD")


def _data(milestone: str, currency: str, now: datetime) -> dict[str, Any]:
    ref = SAMPLE_RETURN_ID
    eta = (now + timedelta(days=3)).date().isoformat()
    tracking = {"carrier": "ups", "tracking_number": "1Z999AA10123456784",
                "tracking_url": f"https://track.example.com/ups/{ref}"}
    refund = {"refund_amount": "49.90", "currency": currency, "refund_method": "original_payment"}
    items = [{"name": "Linen shirt", "quantity": 1}, {"name": "Slim chinos", "quantity": 2}]
    label = {"label_url": f"https://labels.example.com/{ref}.pdf", "carrier": "ups",
             "drop_off_by": (now + timedelta(days=7)).date().isoformat()}
    table: dict[str, dict[str, Any]] = {
        "return_initiated": {"items": items},
        "return_approved": {**label, **refund},
        "label_created": {**label, "tracking_number": tracking["tracking_number"],
                          "label_expires_at": (now + timedelta(days=10)).isoformat()},
        "shipment_dispatched": {**tracking, "eta": eta, **refund},
        "in_transit": {**tracking, "eta": eta, "reason": "weather_delay"},
        "warehouse_received": {"items": items, **refund},
        "inspection_completed": {"inspection_outcome": "accepted", **refund},
        "restocked": refund,
        "refund_processed": refund,
        "return_completed": refund,
        "return_rejected": {"reason": "outside_return_window"},
        "return_cancelled": {"reason": "customer_request", "label_url": label["label_url"]},
        "exception": {**tracking, "reason": "lost_parcel"},
    }
    return table.get(milestone, {})


def sample_payload(milestone: str, locale: str | None = None, full: bool = True,
                   timezone: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A stored-event payload for ``milestone``; ``full=False`` leaves out every optional field.
    Dates (ETA, drop-off, label expiry) count from ``now`` (default: the current time)."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    customer: dict[str, Any] = {"id": "cust-sample"}
    if full:
        customer.update(name="Ana", email="ana@example.com", phone="+14155550123")
    if locale:
        customer["locale"] = locale
    if timezone:
        customer["timezone"] = timezone
    return {"event_id": f"sample-{milestone}", "return_id": SAMPLE_RETURN_ID,
            "milestone": milestone, "occurred_at": now.isoformat(), "customer": customer,
            "data": _data(milestone, _currency(locale), now) if full else {}, "source": "sample"}


def sample_context(
    milestone: str,
    tenant_slug: str = "acme-outfitters",
    tenant_name: str | None = None,
    locale: str | None = None,
    branding: Branding | None = None,
    full: bool = True,
    public_base_url: str = SAMPLE_BASE_URL,
    timezone: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The render context the pipeline would build for a sample event of this tenant."""
    payload = sample_payload(milestone, locale, full, timezone, now)
    unsubscribe = f"{public_base_url.rstrip('/')}/v1/unsubscribe/sample-token" if full else None
    ctx = build_context(payload, tenant_slug, tenant_name, public_base_url, unsubscribe)
    return apply_branding(ctx, branding)
