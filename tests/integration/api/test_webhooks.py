"""Provider webhooks on the real app: signatures, forward-only state, suppression, dedupe."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient

from tests.integration.api_helpers import (
    ApiEnv,
    delivery,
    make_delivery,
    make_tenant,
    sendgrid_headers,
    suppressions,
    twilio_signature,
    uid,
)

pytestmark = pytest.mark.integration

FORM = "application/x-www-form-urlencoded"
STATUS = "/v1/webhooks/twilio/status"
INBOUND = "/v1/webhooks/twilio/inbound"
SENDGRID = "/v1/webhooks/sendgrid/events"


def _twilio(client: TestClient, path: str, params: dict[str, str], *, query: str = "",
            signature: str | None = None):  # type: ignore[no-untyped-def]
    if path == INBOUND and signature is None:  # Twilio names every inbound message
        params = {"MessageSid": uid("SM"), **params}
    full = path + (f"?{query}" if query else "")
    sig = signature if signature is not None else twilio_signature(full, params)
    return client.post(full, content=urlencode(params),
                       headers={"Content-Type": FORM, "X-Twilio-Signature": sig})


# ------------------------------------------------------------------ Twilio status -------

def test_status_callback_moves_forward_only(client: TestClient) -> None:
    # given
    tid, _, _ = make_tenant()
    sid = uid("SM")
    d = make_delivery(tid, channel="sms", recipient="+14155550100", provider="twilio",
                      provider_message_id=sid)
    # when: delivered, then a late "undelivered" and a late "sent"
    r = _twilio(client, STATUS, {"MessageSid": sid, "MessageStatus": "delivered"})
    late = [_twilio(client, STATUS, {"MessageSid": sid, "MessageStatus": s, "ErrorCode": "30003"})
            for s in ("undelivered", "sent")]
    # then
    assert r.status_code == 204, r.text
    assert all(x.status_code == 204 for x in late)
    row = delivery(d)
    assert row["state"] == "delivered"
    assert row["delivered_at"] is not None
    assert row["last_error"] is None


def test_status_callback_undelivered_fails_and_21610_suppresses(client: TestClient) -> None:
    tid, _, _ = make_tenant()
    sid, phone = uid("SM"), "+14155550101"
    d = make_delivery(tid, channel="sms", recipient=phone, provider="twilio",
                      provider_message_id=sid)
    r = _twilio(client, STATUS, {"MessageSid": sid, "MessageStatus": "undelivered",
                                 "ErrorCode": "21610", "From": "+15005550006"})
    assert r.status_code == 204
    row = delivery(d)
    assert row["state"] == "failed"
    assert "21610" in row["last_error"]
    assert [(s["tenant_id"], s["reason"], s["sender"]) for s in suppressions("sms", phone)] == [
        (tid, "stop", "+15005550006")]


def test_status_callback_finds_delivery_by_signed_query_before_send_is_recorded(
    client: TestClient,
) -> None:
    tid, _, _ = make_tenant()
    d = make_delivery(tid, channel="sms", state="sending", provider=None,
                      recipient="+14155550102")
    r = _twilio(client, STATUS, {"MessageSid": uid("SM"), "MessageStatus": "delivered"},
                query=f"delivery_id={d}")
    assert r.status_code == 204
    assert delivery(d)["state"] == "delivered"


@pytest.mark.parametrize("forgery", ["bad-signature", "tampered", "wrong-url", "missing"])
def test_forged_status_callback_is_403_and_changes_nothing(client: TestClient,
                                                          forgery: str) -> None:
    tid, _, _ = make_tenant()
    sid = uid("SM")
    d = make_delivery(tid, channel="sms", provider="twilio", provider_message_id=sid,
                      recipient="+14155550103")
    params = {"MessageSid": sid, "MessageStatus": "failed"}
    if forgery == "bad-signature":
        r = _twilio(client, STATUS, params, signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    elif forgery == "tampered":  # signed "delivered", sent "failed"
        sig = twilio_signature(STATUS, {**params, "MessageStatus": "delivered"})
        r = _twilio(client, STATUS, params, signature=sig)
    elif forgery == "wrong-url":  # signed for the internal http:// URL a proxy forwards to
        from twilio.request_validator import RequestValidator

        from tests.integration.api_helpers import TWILIO_TOKEN
        sig = RequestValidator(TWILIO_TOKEN).compute_signature(
            "http://127.0.0.1:8000" + STATUS, params)
        r = _twilio(client, STATUS, params, signature=sig)
    else:
        r = client.post(STATUS, content=urlencode(params), headers={"Content-Type": FORM})
    assert r.status_code == 403
    assert r.json()["detail"]
    assert delivery(d)["state"] == "sent"


def test_oversized_webhook_body_is_413(client: TestClient) -> None:
    r = client.post(STATUS, content=b"Body=" + b"x" * 70_000,
                    headers={"Content-Type": FORM, "X-Twilio-Signature": "x"})
    assert r.status_code == 413


# ------------------------------------------------------------------ Twilio inbound ------

def test_stop_suppresses_and_start_lifts_for_the_tenant_and_sender(client: TestClient) -> None:
    from return_notify.policy.suppression import is_suppressed
    from return_notify.storage.db import session_scope

    tid, slug, _ = make_tenant()
    phone, ours = "+14155550110", "+15005550006"
    stop = _twilio(client, INBOUND, {"From": phone, "To": ours, "Body": " Stop "},
                   query=f"tenant={slug}")
    assert stop.status_code == 200
    assert stop.headers["content-type"].startswith("application/xml")
    assert "<Message>" not in stop.text
    with session_scope() as s:
        assert is_suppressed(s, tid, "sms", phone, sender=ours) == "stop"
        assert is_suppressed(s, tid, "sms", phone) == "stop"  # sender unknown: be safe
        assert is_suppressed(s, tid, "sms", phone, sender="+15005550999") is None
    start = _twilio(client, INBOUND, {"From": phone, "To": ours, "Body": "START"},
                    query=f"tenant={slug}")
    assert start.status_code == 200
    with session_scope() as s:
        assert is_suppressed(s, tid, "sms", phone, sender=ours) is None


def test_stop_on_a_shared_number_applies_to_every_tenant(client: TestClient) -> None:
    from return_notify.policy.suppression import is_suppressed
    from return_notify.storage.db import session_scope

    t1, _, _ = make_tenant()
    t2, _, _ = make_tenant()
    phone = "+14155550111"
    assert _twilio(client, INBOUND, {"From": phone, "To": "+15005550006",
                                     "Body": "unsubscribe"}).status_code == 200
    with session_scope() as s:
        assert is_suppressed(s, t1, "sms", phone) == "stop"
        assert is_suppressed(s, t2, "sms", phone) == "stop"


def test_help_gets_a_twiml_reply_and_changes_nothing(client: TestClient) -> None:
    phone = "+14155550112"
    r = _twilio(client, INBOUND, {"From": phone, "To": "+15005550006", "Body": "help"})
    assert r.status_code == 200
    assert "<Message>" in r.text and "STOP" in r.text
    assert suppressions("sms", phone) == []


def test_forged_inbound_stop_is_403_and_suppresses_nothing(client: TestClient) -> None:
    phone = "+14155550113"
    params = {"From": phone, "To": "+15005550006", "Body": "STOP"}
    r = _twilio(client, INBOUND, params, signature=twilio_signature(INBOUND, {**params,
                                                                             "Body": "hi"}))
    assert r.status_code == 403
    assert suppressions("sms", phone) == []


# ------------------------------------------------------------------ SendGrid ------------

def _sg_post(client: TestClient, api_env: ApiEnv, events: list[dict[str, object]], *,
             ts: int | None = None, body: bytes | None = None):  # type: ignore[no-untyped-def]
    raw = json.dumps(events).encode()
    headers = sendgrid_headers(api_env, raw, ts if ts is not None else int(time.time()))
    return client.post(SENDGRID, content=body if body is not None else raw, headers=headers)


def test_bounce_fails_the_delivery_and_suppresses_and_duplicates_are_ignored(
    client: TestClient, api_env: ApiEnv,
) -> None:
    # given
    tid, _, _ = make_tenant()
    email, pmid = f"{uid('Bob.')}@Example.com", uid("sg")
    d = make_delivery(tid, recipient=email, provider_message_id=pmid)
    bounce = {"event": "bounce", "type": "bounce", "email": email, "sg_event_id": uid("e"),
              "sg_message_id": f"{pmid}.filterdrecv-1", "reason": "550 5.1.1 no such user",
              "timestamp": int(time.time())}
    # when
    first = _sg_post(client, api_env, [bounce])
    again = _sg_post(client, api_env, [bounce])
    # then
    assert first.status_code == 200, first.text
    assert first.json()["applied"] == 1 and first.json()["suppressed"] == 1
    assert again.status_code == 200
    assert again.json()["duplicates"] == 1 and again.json()["applied"] == 0
    row = delivery(d)
    assert row["state"] == "failed"
    assert row["last_error"].startswith("bounced: 550")
    assert [(s["tenant_id"], s["reason"]) for s in suppressions("email", email.lower())] == [
        (tid, "hard_bounce")]


def test_delivered_by_custom_arg_then_spam_report_suppresses(client: TestClient,
                                                            api_env: ApiEnv) -> None:
    tid, slug, _ = make_tenant()
    email = f"{uid('c')}@example.com"
    d = make_delivery(tid, recipient=email, state="sending", provider=None)
    now = int(time.time())
    r = _sg_post(client, api_env, [
        {"event": "spamreport", "email": email, "sg_event_id": uid("e"), "timestamp": now + 5,
         "delivery_id": str(d), "tenant": slug},
        {"event": "delivered", "email": email, "sg_event_id": uid("e"), "timestamp": now,
         "delivery_id": str(d), "tenant": slug},
        {"event": "open", "email": email, "sg_event_id": uid("e"), "timestamp": now + 9},
    ])
    assert r.status_code == 200
    assert r.json()["ignored"] == 1
    assert delivery(d)["state"] == "delivered"
    assert [s["reason"] for s in suppressions("email", email)] == ["spam_report"]


def test_soft_bounce_fails_without_suppressing(client: TestClient, api_env: ApiEnv) -> None:
    tid, _, _ = make_tenant()
    email, pmid = f"{uid('s')}@example.com", uid("sg")
    d = make_delivery(tid, recipient=email, provider_message_id=pmid)
    r = _sg_post(client, api_env, [{"event": "bounce", "type": "blocked", "email": email,
                                    "sg_event_id": uid("e"), "sg_message_id": pmid + ".x",
                                    "reason": "mailbox full"}])
    assert r.status_code == 200
    assert delivery(d)["last_error"].startswith("blocked")
    assert suppressions("email", email) == []


@pytest.mark.parametrize("forgery", ["tampered-body", "stale", "future", "bad-signature",
                                     "missing"])
def test_forged_or_replayed_sendgrid_webhook_is_403_and_changes_nothing(
    client: TestClient, api_env: ApiEnv, forgery: str,
) -> None:
    tid, _, _ = make_tenant()
    email, pmid = f"{uid('f')}@example.com", uid("sg")
    d = make_delivery(tid, recipient=email, provider_message_id=pmid)
    events = [{"event": "bounce", "type": "bounce", "email": email, "sg_event_id": uid("e"),
               "sg_message_id": pmid + ".x"}]
    now = int(time.time())
    if forgery == "tampered-body":
        r = _sg_post(client, api_env, events, body=json.dumps(events, indent=1).encode())
    elif forgery == "stale":  # a validly signed request captured 10 minutes ago
        r = _sg_post(client, api_env, events, ts=now - 600)
    elif forgery == "future":
        r = _sg_post(client, api_env, events, ts=now + 600)
    elif forgery == "bad-signature":
        raw = json.dumps(events).encode()
        headers = sendgrid_headers(api_env, raw, now)
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "bm90IGEgc2lnbmF0dXJl"
        r = client.post(SENDGRID, content=raw, headers=headers)
    else:
        r = client.post(SENDGRID, json=events)
    assert r.status_code == 403
    assert delivery(d)["state"] == "sent"
    assert suppressions("email", email) == []
