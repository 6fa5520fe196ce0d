"""Build the template context of a delivery from its stored event payload.

``cta_url`` is the message's call-to-action (the label, the tracking page or the return's
status page); ``rating_url``/``rating_urls`` are ``None`` here: the renderer fills them, and
replaces ``cta_url`` with a tracked link, when the tenant's switches say so (``links``).

``locale`` and ``timezone`` are the customer's (BCP 47 tag, IANA zone; ``None`` when the
event has none): ``rendering.render`` picks the template language from the locale and the
``money``/``date`` filters format in that locale and timezone. Tenant branding keys start
with defaults here and are filled from ``tenant_branding`` by ``branding.apply_branding``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from return_notify.core.urls import https_url

DATA_KEYS = (
    "eta", "carrier", "tracking_url", "tracking_number", "label_url", "label_expires_at",
    "refund_amount", "currency", "refund_method", "inspection_outcome", "reason", "items",
    "drop_off_by",
)
_CTA_KEY = {
    "label_created": "label_url",
    "shipment_dispatched": "tracking_url",
    "in_transit": "tracking_url",
}


def status_url(public_base_url: str, tenant: str, return_id: str) -> str:
    """The public status page of a return (the default call-to-action)."""
    return f"{public_base_url.rstrip('/')}/r/{quote(tenant)}/{quote(return_id, safe='')}"


def call_to_action(milestone: str, data: dict[str, Any] | None) -> str | None:
    """The milestone's own call-to-action URL in the event data (label, tracking page), or
    None: the message then links to the return's status page. A producer's link counts only
    if it is https (never ``javascript:``, ``data:`` or a plain http page)."""
    key = _CTA_KEY.get(milestone)
    value = (data or {}).get(key) if key else None
    return https_url(value) if value else None


def build_context(
    payload: dict[str, Any],
    tenant_slug: str,
    tenant_name: str | None,
    public_base_url: str,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """The render context of one delivery (see the module docstring for the keys)."""
    data = dict(payload.get("data") or {})
    for key in DATA_KEYS:
        data.setdefault(key, None)
    if data.get("refund_amount") is not None:
        data["refund_amount"] = str(data["refund_amount"])
    status = status_url(public_base_url, tenant_slug, payload["return_id"])
    cta = call_to_action(payload["milestone"], data) or status
    occurred = payload["occurred_at"]
    if isinstance(occurred, str):
        occurred = datetime.fromisoformat(occurred)
    customer = payload.get("customer") or {}
    return {
        "milestone": payload["milestone"],
        "return_id": payload["return_id"],
        "tenant": {
            "slug": tenant_slug,
            "name": tenant_name or tenant_slug.replace("-", " ").replace("_", " ").title(),
            "brand_color": "#1a73e8",
            "logo_url": None,
            "support_url": None,
            "support_email": None,
        },
        "customer": {"name": customer.get("name")},
        "locale": customer.get("locale"),
        "timezone": customer.get("timezone"),
        "data": data,
        "occurred_at": occurred,
        "cta_url": str(cta),
        "status_url": status,
        "unsubscribe_url": unsubscribe_url,
        "rating_url": None,
        "rating_urls": None,
    }
