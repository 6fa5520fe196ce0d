"""The pipeline through the real SDKs and local provider servers: STOP/START, 21610 →
email fallback, SendGrid → SMTP failover, unsubscribe headers, in-app inbox."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.fakes.twilio_server import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    TwilioFakeServer,
)
from return_notify.channels.registry import build_channel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import DeliverOutcome, deliver_batch
from return_notify.pipeline.ingest import ingest_batch
from return_notify.storage.db import session_scope
from tests.helpers import event, uid
from tests.integration.provider_fixtures import SmtpTestServer

pytestmark = pytest.mark.integration

PUBLIC = "https://notify.shop.example"
SENDER = "+15005550006"


@pytest.fixture
def fakes(svc: Any) -> Iterator[dict[str, Any]]:
    with TwilioFakeServer() as tw, SendGridFakeServer() as sg, SmtpTestServer() as smtp:
        yield {"twilio": tw, "sendgrid": sg, "smtp": smtp}


def settings_for(fakes: dict[str, Any], **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        email_provider="sendgrid", sms_provider="twilio", sendgrid_api_key=FAKE_API_KEY,
        sendgrid_base_url=fakes["sendgrid"].base_url, twilio_account_sid=FAKE_ACCOUNT_SID,
        twilio_auth_token=FAKE_AUTH_TOKEN, twilio_from=SENDER,
        twilio_base_url=fakes["twilio"].base_url, public_base_url=PUBLIC,
        smtp_url=fakes["smtp"].url(), provider_timeout_s=3, max_attempts=3,
        backoff_base_s=0.01, backoff_max_s=0.02,
    )
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def run(settings: Settings, deliveries: dict[str, list[int]]) -> dict[str, DeliverOutcome]:
    out = {}
    for ch, ids in deliveries.items():
        out[ch] = deliver_batch(session_scope, ch, ids, build_channel(ch, settings), settings)
    return out


def state(did: int) -> tuple[str, str | None]:
    with session_scope() as s:
        return tuple(s.execute(text("SELECT state, skip_reason FROM deliveries WHERE id = :i"),
                               {"i": did}).one())  # type: ignore[return-value]


def ingest(evs: list[dict[str, Any]]) -> Any:
    with session_scope() as s:
        return ingest_batch(s, evs)


def inbound(body: str, phone: str) -> int:
    from return_notify.api.app import create_app
    from return_notify.api.settings import reset_api_settings
    from return_notify.config.settings import reset_settings

    os.environ.update(RSN_TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN, RSN_PUBLIC_BASE_URL=PUBLIC)
    reset_settings()
    reset_api_settings()
    try:
        params = {"From": phone, "To": SENDER, "Body": body, "MessageSid": uid("SM")}
        path = "/v1/webhooks/twilio/inbound"
        sig = RequestValidator(FAKE_AUTH_TOKEN).compute_signature(PUBLIC + path, params)
        with TestClient(create_app()) as client:
            r = client.post(path, content=urlencode(params), headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": sig})
        return r.status_code
    finally:
        for k in ("RSN_TWILIO_AUTH_TOKEN", "RSN_PUBLIC_BASE_URL"):
            os.environ.pop(k, None)
        reset_settings()
        reset_api_settings()


def test_stop_suppresses_then_start_sends_again(fakes: dict[str, Any]) -> None:
    settings = settings_for(fakes)
    phone = "+14155550177"
    t = uid("t-")
    # given the customer texted STOP to our number
    assert inbound("STOP", phone) == 200
    # when a label is created for their return
    r1 = ingest([event("label_created", tenant=t, phone=phone, email=None)])
    run(settings, {"sms": r1.deliveries["sms"]})
    # then no SMS reaches Twilio and the delivery says why
    assert state(r1.deliveries["sms"][0]) == ("suppressed", "stop")
    assert not [m for m in fakes["twilio"].messages() if m.body.get("To") == phone]
    # and after START the next milestone is sent again
    assert inbound("START", phone) == 200
    r2 = ingest([event("refund_processed", tenant=t, phone=phone, email=None,
                       return_id=uid("RMA-"))])
    run(settings, {"sms": r2.deliveries["sms"]})
    assert state(r2.deliveries["sms"][0])[0] == "sent"
    sent = [m for m in fakes["twilio"].messages() if m.body.get("To") == phone]
    assert len(sent) == 1
    assert sent[0].body["StatusCallback"] == (
        f"{PUBLIC}/v1/webhooks/twilio/status?delivery_id={r2.deliveries['sms'][0]}")


def test_21610_suppresses_the_number_and_falls_back_to_email(fakes: dict[str, Any]) -> None:
    settings = settings_for(fakes)
    opted_out = "+15005550004"  # Twilio's magic number: 21610, unsubscribed recipient
    ev = event("refund_processed", tenant=uid("t-"), phone=opted_out, email="ana@example.com",
               data={"refund_amount": "20.00", "currency": "USD"})
    r = ingest([ev])
    # the event's own email goes normally; make it look like only SMS was planned
    with session_scope() as s:
        s.execute(text("DELETE FROM deliveries WHERE id = ANY(:i)"), {"i": r.deliveries["email"]})
    out = run(settings, {"sms": r.deliveries["sms"]})
    sms_id = r.deliveries["sms"][0]
    assert state(sms_id)[0] == "failed"
    [fallback] = out["sms"].fallback_email
    run(settings, {"email": [fallback]})
    assert state(fallback)[0] == "sent"
    [mail] = [m for m in fakes["sendgrid"].mails()
              if m.body["personalizations"][0]["to"][0]["email"] == "ana@example.com"]
    assert "20.00" in mail.raw.decode()
    with session_scope() as s:
        reason = s.execute(text("SELECT reason FROM suppressions WHERE address = :a"),
                           {"a": opted_out}).scalar()
    assert reason == "stop"


def test_sendgrid_5xx_fails_over_to_smtp_inside_the_pipeline(fakes: dict[str, Any]) -> None:
    settings = settings_for(fakes, email_providers="sendgrid,smtp")
    fakes["sendgrid"].fail_next(5, "server_error")
    ev = event("return_approved", tenant=uid("t-"), phone=None, email="ben@example.com")
    r = ingest([ev])
    run(settings, {"email": r.deliveries["email"]})
    assert state(r.deliveries["email"][0])[0] == "sent"
    assert [m.rcpt_tos for m in fakes["smtp"].messages] == [["ben@example.com"]]
    with session_scope() as s:
        provider = s.execute(text("SELECT provider FROM deliveries WHERE id = :i"),
                             {"i": r.deliveries["email"][0]}).scalar()
    assert provider == "smtp"


def test_email_carries_one_click_unsubscribe_when_a_secret_is_set(fakes: dict[str, Any]) -> None:
    from return_notify.api.settings import reset_api_settings

    os.environ["RSN_UNSUBSCRIBE_SECRET"] = "test-unsubscribe-secret-0123456789"
    reset_api_settings()
    try:
        settings = settings_for(fakes)
        r = ingest([event("warehouse_received", tenant=uid("t-"), phone=None,
                          email="cleo@example.com")])
        run(settings, {"email": r.deliveries["email"]})
    finally:
        os.environ.pop("RSN_UNSUBSCRIBE_SECRET")
        reset_api_settings()
    [mail] = [m for m in fakes["sendgrid"].mails()
              if m.body["personalizations"][0]["to"][0]["email"] == "cleo@example.com"]
    headers = mail.body["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"<{PUBLIC}/v1/unsubscribe/" in headers["List-Unsubscribe"]
    assert "cleo" not in headers["List-Unsubscribe"]  # the token hides the address
    assert mail.body["custom_args"] == {"delivery_id": str(r.deliveries["email"][0])}


def test_in_app_goes_to_the_inbox(fakes: dict[str, Any]) -> None:
    settings = settings_for(fakes)
    ev = event("restocked", tenant=uid("t-"), phone=None, email=None)
    r = ingest([ev])
    run(settings, {"inapp": r.deliveries["inapp"]})
    with session_scope() as s:
        row = s.execute(text("SELECT customer_id, return_id, title FROM inbox_items "
                             "WHERE delivery_id = :i"), {"i": r.deliveries["inapp"][0]}).one()
    assert row.customer_id == "cust-1" and row.return_id == ev["return_id"] and row.title
