"""EasyPost tracker webhooks: ``X-Hmac-Signature`` check and Tracker ``Event`` → ``CarrierUpdate``.

EasyPost POSTs an ``Event`` (``description`` ``tracker.created`` / ``tracker.updated``) whose
``result`` is the ``Tracker``. The signature is ``hmac-sha256-hex=`` + the hex HMAC-SHA256 of
the raw body under the webhook secret, NFKD-normalised first, exactly as the official client
libraries' ``validate_webhook`` computes it.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Mapping
from typing import Any

from return_notify.events import Milestone
from return_notify.sources.base import (
    CarrierPayloadError,
    CarrierUpdate,
    eta_text,
    event_key,
    get_path,
    parse_time,
    reason_code,
    text_or_none,
)

NAME = "easypost"
SIGNATURE_HEADER = "x-hmac-signature"
SIGNATURE_PREFIX = "hmac-sha256-hex="

#: Tracker ``status`` → milestone. A return parcel is addressed to the returns centre, so
#: its delivery is the warehouse receipt.
STATUS_MILESTONES: dict[str, Milestone | None] = {
    "pre_transit": Milestone.LABEL_CREATED,
    "in_transit": Milestone.IN_TRANSIT,
    "out_for_delivery": Milestone.IN_TRANSIT,
    "available_for_pickup": Milestone.IN_TRANSIT,
    "delivered": Milestone.WAREHOUSE_RECEIVED,
    "return_to_sender": Milestone.EXCEPTION,
    "failure": Milestone.EXCEPTION,
    "error": Milestone.EXCEPTION,
    "cancelled": Milestone.EXCEPTION,
    "unknown": None,
}
_GENERIC_DETAILS = {"status_update", "unknown", "arrived_at_facility", "in_transit",
                    "departed_facility", "arrived_at_destination", "out_for_delivery"}


def signature(body: bytes, secret: str) -> str:
    """The header value EasyPost sends for ``body`` under ``secret``."""
    key = unicodedata.normalize("NFKD", secret).encode("utf-8")
    return SIGNATURE_PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str) -> bool:
    sent = headers.get(SIGNATURE_HEADER)
    if not sent:
        return False
    return hmac.compare_digest(signature(body, secret).encode(), sent.strip().encode())


def parse(payload: Any) -> CarrierUpdate | None:
    if not isinstance(payload, Mapping):
        raise CarrierPayloadError("an EasyPost webhook is a JSON object (an Event)")
    description = str(payload.get("description") or "")
    if not description.startswith("tracker."):
        return None  # batch.*, refund.*, ...: nothing about a return parcel
    tracker = payload.get("result")
    if not isinstance(tracker, Mapping):
        raise CarrierPayloadError("Event.result must be the Tracker object")
    tracking_number = text_or_none(tracker.get("tracking_code"), 64)
    status = text_or_none(tracker.get("status"), 64)
    if not tracking_number or not status:
        raise CarrierPayloadError("Tracker.tracking_code and Tracker.status are required")
    milestone = STATUS_MILESTONES.get(status.lower())
    details = [d for d in tracker.get("tracking_details") or [] if isinstance(d, Mapping)]
    latest = details[-1] if details else {}
    occurred = (parse_time(latest.get("datetime")) or parse_time(tracker.get("updated_at"))
                or parse_time(payload.get("updated_at")) or parse_time(payload.get("created_at")))
    if occurred is None:
        raise CarrierPayloadError("no timestamp with an offset in the Tracker or its Event")
    eta = eta_text(tracker.get("est_delivery_date")) or eta_text(
        get_path(tracker, "carrier_detail", "est_delivery_date_local"))
    reason = None
    if milestone is Milestone.EXCEPTION:
        detail = str(tracker.get("status_detail") or "").lower()
        reason = reason_code(None if detail in _GENERIC_DETAILS else detail,
                             "label_cancelled" if status == "cancelled" else status)
    shipment = text_or_none(tracker.get("id"), 64) or tracking_number
    return CarrierUpdate(
        provider=NAME,
        key=event_key(NAME, shipment, milestone, status, eta, reason),
        tracking_number=tracking_number,
        carrier=text_or_none(tracker.get("carrier"), 64),
        status=status,
        milestone=milestone,
        occurred_at=occurred,
        eta=eta if milestone is Milestone.IN_TRANSIT else None,
        reason=reason,
        tracking_url=text_or_none(tracker.get("public_url"), 500),
        return_ref=None,  # a Tracker carries no merchant metadata
        detail=text_or_none(latest.get("message")),
    )
