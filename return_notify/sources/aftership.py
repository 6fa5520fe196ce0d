"""AfterShip tracking webhooks: ``aftership-hmac-sha256`` check and ``msg`` → ``CarrierUpdate``.

AfterShip POSTs ``{"event": "tracking_update" | "edd_revise", "event_id", "ts", "msg": {…the
tracking…}}``; the header ``aftership-hmac-sha256`` is the base64 HMAC-SHA256 of the raw body
under the account's webhook secret (Settings → Webhooks). ``msg.custom_fields.return_id``,
when the merchant set it on the tracking, names the return directly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
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

NAME = "aftership"
SIGNATURE_HEADER = "aftership-hmac-sha256"
TRACKING_EVENTS = frozenset({"tracking_update", "edd_revise"})

#: Delivery status ``tag`` → milestone (AfterShip's nine statuses). ``Pending`` and
#: ``Expired`` say nothing the customer can use.
TAG_MILESTONES: dict[str, Milestone | None] = {
    "InfoReceived": Milestone.LABEL_CREATED,
    "InTransit": Milestone.IN_TRANSIT,
    "OutForDelivery": Milestone.IN_TRANSIT,
    "AvailableForPickup": Milestone.IN_TRANSIT,
    "AttemptFail": Milestone.IN_TRANSIT,
    "Delivered": Milestone.WAREHOUSE_RECEIVED,
    "Exception": Milestone.EXCEPTION,
    "Pending": None,
    "Expired": None,
}


def signature(body: bytes, secret: str) -> str:
    """The header value AfterShip sends for ``body`` under ``secret``."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode()


def verify(body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str) -> bool:
    sent = headers.get(SIGNATURE_HEADER)
    if not sent:
        return False
    return hmac.compare_digest(signature(body, secret).encode(), sent.strip().encode())


def _eta(msg: Mapping[str, Any]) -> str | None:
    """``expected_delivery`` (classic) or the newer estimated-delivery objects."""
    return (eta_text(msg.get("expected_delivery"))
            or eta_text(get_path(msg, "latest_estimated_delivery", "datetime"))
            or eta_text(get_path(msg, "courier_estimated_delivery_date", "estimated_delivery_date"))
            or eta_text(get_path(msg, "aftership_estimated_delivery_date",
                                 "estimated_delivery_date")))


def parse(payload: Any) -> CarrierUpdate | None:
    if not isinstance(payload, Mapping):
        raise CarrierPayloadError("an AfterShip webhook is a JSON object")
    if payload.get("event") not in TRACKING_EVENTS:
        return None
    msg = payload.get("msg")
    if not isinstance(msg, Mapping):
        raise CarrierPayloadError("'msg' must be the tracking object")
    tracking_number = text_or_none(msg.get("tracking_number"), 64)
    tag = text_or_none(msg.get("tag"), 64)
    if not tracking_number or not tag:
        raise CarrierPayloadError("msg.tracking_number and msg.tag are required")
    milestone = TAG_MILESTONES.get(tag)
    checkpoints = [c for c in msg.get("checkpoints") or [] if isinstance(c, Mapping)]
    latest = checkpoints[-1] if checkpoints else {}
    occurred = (parse_time(latest.get("checkpoint_time")) or parse_time(msg.get("updated_at"))
                or parse_time(payload.get("ts")))
    if occurred is None:
        raise CarrierPayloadError("no timestamp with an offset (checkpoint_time, updated_at, ts)")
    eta = _eta(msg)
    reason = None
    if milestone is Milestone.EXCEPTION:
        reason = reason_code(msg.get("subtag_message"), latest.get("subtag_message"),
                             msg.get("subtag"), "exception")
    shipment = text_or_none(msg.get("id"), 64) or tracking_number
    return CarrierUpdate(
        provider=NAME,
        key=event_key(NAME, shipment, milestone, tag, eta, reason),
        tracking_number=tracking_number,
        carrier=text_or_none(msg.get("slug"), 64),
        status=tag,
        milestone=milestone,
        occurred_at=occurred,
        eta=eta if milestone is Milestone.IN_TRANSIT else None,
        reason=reason,
        tracking_url=text_or_none(msg.get("courier_tracking_link"), 500)
        or text_or_none(msg.get("aftership_tracking_url"), 500),
        return_ref=text_or_none(get_path(msg, "custom_fields", "return_id"), 64),
        detail=text_or_none(latest.get("message")),
    )
