"""Shippo ``track_updated`` webhooks: URL token check and Track object → ``CarrierUpdate``.

Shippo documents three ways to secure a webhook: an IP allowlist, a self-generated token in
the webhook URL's query (``?token=…``) and HMAC arranged through an account manager. The
token is the one every account can set up, so it is what is verified here (constant time).
The Track's ``metadata`` (≤ 100 chars, set when registering the tracking) may name the
return as ``return_id=RMA-100042``.
"""

from __future__ import annotations

import hmac
import re
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

NAME = "shippo"
TOKEN_PARAM = "token"

STATUS_MILESTONES: dict[str, Milestone | None] = {
    "PRE_TRANSIT": Milestone.LABEL_CREATED,
    "TRANSIT": Milestone.IN_TRANSIT,
    "DELIVERED": Milestone.WAREHOUSE_RECEIVED,
    "RETURNED": Milestone.EXCEPTION,
    "FAILURE": Milestone.EXCEPTION,
    "UNKNOWN": None,
}
_RETURN_REF = re.compile(r"(?:^|[\s;,])return_id=([^\s;,]{1,64})")


def verify(body: bytes, headers: Mapping[str, str], query: Mapping[str, str], secret: str) -> bool:
    sent = query.get(TOKEN_PARAM)
    if not sent:
        return False
    return hmac.compare_digest(secret.encode(), sent.encode())


def parse(payload: Any) -> CarrierUpdate | None:
    if not isinstance(payload, Mapping):
        raise CarrierPayloadError("a Shippo webhook is a JSON object")
    if payload.get("event") != "track_updated":
        return None
    track = payload.get("data")
    if not isinstance(track, Mapping):
        raise CarrierPayloadError("'data' must be the Track object")
    tracking_number = text_or_none(track.get("tracking_number"), 64)
    status = text_or_none(get_path(track, "tracking_status", "status"), 64)
    if not tracking_number or not status:
        raise CarrierPayloadError("data.tracking_number and data.tracking_status.status are required")
    milestone = STATUS_MILESTONES.get(status.upper())
    occurred = (parse_time(get_path(track, "tracking_status", "status_date"))
                or parse_time(get_path(track, "tracking_status", "object_updated")))
    if occurred is None:
        raise CarrierPayloadError("tracking_status.status_date must be a timestamp with an offset")
    eta = eta_text(track.get("eta"))
    reason = None
    if milestone is Milestone.EXCEPTION:
        reason = reason_code(get_path(track, "tracking_status", "substatus", "code"),
                             "returned_to_sender" if status.upper() == "RETURNED" else status)
    metadata = track.get("metadata")
    match = _RETURN_REF.search(metadata) if isinstance(metadata, str) else None
    carrier = text_or_none(track.get("carrier"), 64)
    return CarrierUpdate(
        provider=NAME,
        key=event_key(NAME, f"{carrier or '-'}:{tracking_number}", milestone, status, eta, reason),
        tracking_number=tracking_number,
        carrier=carrier,
        status=status,
        milestone=milestone,
        occurred_at=occurred,
        eta=eta if milestone is Milestone.IN_TRANSIT else None,
        reason=reason,
        tracking_url=None,
        return_ref=match.group(1) if match else None,
        detail=text_or_none(get_path(track, "tracking_status", "status_details")),
    )
