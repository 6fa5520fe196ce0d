"""Replayed and forged provider webhooks against the running API: a replay changes nothing,
a forgery is refused, whatever the body.

Reproduced before: signed START, STOP, then the START replayed lifted the opt-out (inbound
messages were not deduplicated). Now every inbound message is applied once, by its
``MessageSid``; SendGrid events once by ``sg_event_id``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from tests.integration.api_helpers import suppressions, uid
from tests.integration.hostile_helpers import (
    FIGURES,
    PUBLIC_BASE_URL,
    TWILIO_TOKEN,
    HostileKeys,
    LiveClient,
)

pytestmark = pytest.mark.integration

INBOUND = "/v1/webhooks/twilio/inbound"
SENDGRID = "/v1/webhooks/sendgrid/events"
FORM = "application/x-www-form-urlencoded"


def _twilio(client: LiveClient, params: dict[str, str], query: str,
            signature: str | None = None) -> Any:
    path = f"{INBOUND}?{query}"
    sig = signature or RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + path,
                                                                       params)
    return client.post(path, content=urlencode(params),
                       headers={"Content-Type": FORM, "X-Twilio-Signature": sig})


def test_a_replayed_start_does_not_lift_a_later_stop(live_client: LiveClient,
                                                     hostile_keys: HostileKeys) -> None:
    phone, ours, q = "+14155550177", "+15005550006", f"tenant={hostile_keys.slug}"
    start = {"MessageSid": uid("SM"), "From": phone, "To": ours, "Body": "START"}
    stop = {"MessageSid": uid("SM"), "From": phone, "To": ours, "Body": "STOP"}
    # given: START, then STOP, each signed by Twilio
    assert _twilio(live_client, start, q).status_code == 200
    assert _twilio(live_client, stop, q).status_code == 200
    assert [r["reason"] for r in suppressions("sms", phone)] == ["stop"]
    # when the START (and the STOP) are replayed, byte for byte, signature and all
    for replay in (start, stop, start):
        assert _twilio(live_client, replay, q).status_code == 200
    # then the opt-out stands
    assert [r["reason"] for r in suppressions("sms", phone)] == ["stop"]
    # and a new START (a new message) lifts it, as the customer asked
    fresh = {**start, "MessageSid": uid("SM")}
    assert _twilio(live_client, fresh, q).status_code == 200
    assert suppressions("sms", phone) == []
    FIGURES.count("replayed twilio inbound", 3)


def test_forged_and_incomplete_twilio_messages_change_nothing(
        live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    phone, q = "+14155550178", f"tenant={hostile_keys.slug}"
    stop = {"MessageSid": uid("SM"), "From": phone, "To": "+15005550006", "Body": "STOP"}
    assert _twilio(live_client, stop, q, signature="Zm9yZ2Vk").status_code == 403
    signed_other = RequestValidator(TWILIO_TOKEN).compute_signature(
        PUBLIC_BASE_URL + f"{INBOUND}?{q}", {**stop, "From": "+14155550000"})
    assert _twilio(live_client, stop, q, signature=signed_other).status_code == 403
    no_sid = {k: v for k, v in stop.items() if k != "MessageSid"}
    assert _twilio(live_client, no_sid, q).status_code == 400
    assert suppressions("sms", phone) == []
    FIGURES.count("forged twilio inbound", 3)


def _sendgrid(client: LiveClient, key: ec.EllipticCurvePrivateKey, body: bytes,
              timestamp: str | None = None, signed_body: bytes | None = None) -> Any:
    ts = timestamp or str(int(time.time()))
    sig = key.sign(ts.encode() + (signed_body if signed_body is not None else body),
                   ec.ECDSA(hashes.SHA256()))
    return client.post(SENDGRID, content=body, headers={
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts})


def test_sendgrid_replays_are_duplicates_and_forgeries_are_refused(
        live_client: LiveClient, hostile_keys: HostileKeys) -> None:
    key = live_client.stack.sendgrid_key
    email = f"{uid('bounce-')}@example.com"
    events = [{"event": "bounce", "email": email, "sg_event_id": uid("sg-"),
               "tenant": hostile_keys.slug, "timestamp": int(time.time())}]
    body = json.dumps(events).encode()
    first = _sendgrid(live_client, key, body)
    assert first.status_code == 200 and first.json()["suppressed"] == 1
    again = _sendgrid(live_client, key, body)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert again.json()["suppressed"] == 0
    # stale, forged, absurd or deep: refused, nothing applied
    assert _sendgrid(live_client, key, body, str(int(time.time()) - 3600)).status_code == 403
    assert _sendgrid(live_client, key, body, "9" * 5000).status_code == 403
    other = json.dumps([{**events[0], "sg_event_id": uid("sg-")}]).encode()
    assert _sendgrid(live_client, key, other, signed_body=body).status_code == 403
    deep = b"[" * 5000 + b"]" * 5000
    assert _sendgrid(live_client, key, deep).status_code == 400
    assert len(suppressions("email", email)) == 1
    FIGURES.count("replayed or forged sendgrid webhooks", 6)
