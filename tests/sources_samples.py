"""Provider and feed payloads for the sources tests, shaped as the providers document them.

* EasyPost: an ``Event`` (``tracker.updated``) whose ``result`` is a ``Tracker`` with
  ``tracking_details`` and ``carrier_detail`` (docs.easypost.com, Trackers and Events).
* AfterShip: a tracking webhook ``{event, event_id, is_tracking_first_tag, msg, ts}`` with
  ``msg.tag``/``subtag``/``expected_delivery``/``checkpoints`` (aftership.com/docs/tracking).
* Shippo: ``{"event": "track_updated", "test", "data": <Track>}`` (docs.goshippo.com).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def easypost_event(tracking_code: str, status: str = "in_transit", *,
                   est_delivery: str | None = "2026-12-02T00:00:00Z",
                   status_detail: str = "arrived_at_facility", tracker_id: str | None = None,
                   at: datetime | None = None, description: str = "tracker.updated") -> dict[str, Any]:
    at = at or datetime.now(UTC).replace(microsecond=0)
    tracker_id = tracker_id or f"trk_{uuid.uuid4().hex}"
    details = [
        {"object": "TrackingDetail", "message": "Shipping Label Created", "description": None,
         "status": "pre_transit", "status_detail": "status_update",
         "datetime": _ts(at - timedelta(days=1)), "source": "USPS", "carrier_code": None,
         "tracking_location": {"object": "TrackingLocation", "city": "HOUSTON", "state": "TX",
                               "country": None, "zip": "77063"}},
        {"object": "TrackingDetail", "message": "Arrived at USPS Regional Facility",
         "description": None, "status": status, "status_detail": status_detail,
         "datetime": _ts(at), "source": "USPS", "carrier_code": None,
         "tracking_location": {"object": "TrackingLocation", "city": "MEMPHIS", "state": "TN",
                               "country": None, "zip": "38118"}},
    ]
    tracker = {
        "id": tracker_id, "object": "Tracker", "mode": "test", "tracking_code": tracking_code,
        "status": status, "status_detail": status_detail, "created_at": _ts(at - timedelta(days=1)),
        "updated_at": _ts(at), "signed_by": None, "weight": None,
        "est_delivery_date": est_delivery, "shipment_id": None, "carrier": "USPS",
        "tracking_details": details,
        "carrier_detail": {"object": "CarrierDetail", "service": "First-Class Package Service",
                           "container_type": None, "est_delivery_date_local": None,
                           "est_delivery_time_local": None,
                           "origin_location": "HOUSTON TX, 77001",
                           "destination_location": "MEMPHIS TN, 38118",
                           "guaranteed_delivery_date": None, "alternate_identifier": None,
                           "initial_delivery_attempt": None},
        "finalized": True, "is_return": True,
        "public_url": f"https://track.easypost.com/{base64.urlsafe_b64encode(tracker_id.encode()).decode()}",
        "fees": [{"object": "Fee", "type": "TrackerFee", "amount": "0.02000", "charged": False,
                  "refunded": False}],
    }
    return {"description": description, "mode": "test",
            "previous_attributes": {"status": "pre_transit"}, "created_at": _ts(at),
            "pending_urls": ["https://notify.example.com/v1/carriers/easypost"],
            "completed_urls": [], "updated_at": _ts(at), "id": f"evt_{uuid.uuid4().hex}",
            "user_id": "user_060ab38db3c04ffaa60f262e5781a9be", "status": "pending",
            "object": "Event", "result": tracker}


def aftership_webhook(tracking_number: str, tag: str = "Delivered", *,
                      subtag: str | None = None, subtag_message: str | None = None,
                      expected_delivery: str | None = "2026-12-02", tracking_id: str | None = None,
                      at: datetime | None = None, custom_fields: dict[str, Any] | None = None,
                      event: str = "tracking_update") -> dict[str, Any]:
    at = at or datetime.now(UTC).replace(microsecond=0)
    subtag = subtag or f"{tag}_001"
    subtag_message = subtag_message or {"Delivered": "Delivered", "InTransit": "In Transit",
                                        "Exception": "Exception"}.get(tag, tag)
    local = at.astimezone(datetime.now().astimezone().tzinfo)
    checkpoints = [
        {"slug": "ups", "city": "Louisville", "created_at": _ts(at - timedelta(days=1)),
         "location": "Louisville, KY, US", "country_name": "USA", "message": "Departed from Facility",
         "country_iso3": "USA", "tag": "InTransit", "subtag": "InTransit_001",
         "subtag_message": "In Transit", "checkpoint_time": (local - timedelta(days=1)).isoformat(),
         "coordinates": [], "state": "KY", "zip": "40201", "raw_tag": "I"},
        {"slug": "ups", "city": "Memphis", "created_at": _ts(at), "location": "Memphis, TN, US",
         "country_name": "USA", "message": subtag_message, "country_iso3": "USA", "tag": tag,
         "subtag": subtag, "subtag_message": subtag_message, "checkpoint_time": local.isoformat(),
         "coordinates": [], "state": "TN", "zip": "38118", "raw_tag": "D"},
    ]
    msg = {
        "id": tracking_id or uuid.uuid4().hex[:24], "tracking_number": tracking_number,
        "slug": "ups", "active": tag not in ("Delivered", "Expired"), "tag": tag,
        "subtag": subtag, "subtag_message": subtag_message, "title": tracking_number,
        "order_id": None, "order_number": None, "shipment_type": "UPS Ground",
        "expected_delivery": expected_delivery, "origin_country_iso3": "USA",
        "destination_country_iso3": "USA", "customer_name": None, "emails": [], "smses": [],
        "courier_tracking_link": f"https://www.ups.com/track?tracknum={tracking_number}",
        "custom_fields": custom_fields or {}, "created_at": _ts(at - timedelta(days=2)),
        "updated_at": _ts(at), "checkpoints": checkpoints, "return_to_sender": False,
    }
    return {"event": event, "event_id": str(uuid.uuid4()), "is_tracking_first_tag": True,
            "msg": msg, "ts": int(at.timestamp())}


def shippo_webhook(tracking_number: str, status: str = "TRANSIT", *,
                   eta: str | None = "2026-12-03T12:00:00Z", metadata: str | None = None,
                   substatus: str = "package_departed", at: datetime | None = None,
                   ) -> dict[str, Any]:
    at = at or datetime.now(UTC).replace(microsecond=0)
    address = {"city": "Memphis", "state": "TN", "zip": "38118", "country": "US"}
    current = {"object_created": _ts(at), "object_updated": _ts(at),
               "object_id": uuid.uuid4().hex, "status": status,
               "status_details": "Your shipment has departed from the origin.",
               "status_date": _ts(at), "location": address,
               "substatus": {"code": substatus, "text": "Package has departed",
                             "action_required": False}}
    return {"event": "track_updated", "test": True, "data": {
        "carrier": "usps", "tracking_number": tracking_number,
        "address_from": {"city": "Las Vegas", "state": "NV", "zip": "89101", "country": "US"},
        "address_to": address, "eta": eta, "original_eta": eta,
        "servicelevel": {"token": "usps_priority", "name": "Priority Mail"},
        "metadata": metadata, "messages": [], "tracking_status": current,
        "tracking_history": [current]}}


def wms_message(rma: str, status: str = "RCV", *, receipt: str | None = None,
                at: str = "2026-11-28 09:30:12") -> dict[str, Any]:
    return {"messageId": uuid.uuid4().hex[:8], "eventType": "RETURN_RECEIPT", "rma": rma,
            "statusCode": status, "statusTime": at, "facility": {"code": "DC-EAST-01"},
            "receipt": {"id": receipt or f"RCPT-{uuid.uuid4().hex[:6]}", "lines": [
                {"sku": "TSHIRT-M-BLUE", "description": "Organic cotton tee, M, blue",
                 "qtyReceived": 1}]},
            "inspection": {"grade": "A", "disposition": "ACCEPT"}}


def erp_credit_memo(rma: str, status: str = "POSTED", *, doc: str = "9000123") -> dict[str, Any]:
    return {"header": {"docType": "CREDIT_MEMO", "docNumber": doc, "status": status,
                       "postedAt": 1796031000, "returnOrder": rma},
            "customer": {"number": "C-991", "name": "Ana Silva", "email": "ana@example.com",
                         "mobile": "+14155550123", "language": "en_US"},
            "amounts": {"refundCents": 4990, "currency": "USD"}, "refundMethod": "ORIG"}


# ------------------------------------------------------------------ signing ------------

def body_of(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def easypost_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Hmac-Signature": f"hmac-sha256-hex={digest}"}


def aftership_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "aftership-hmac-sha256": digest}
