"""The pipeline through the real SDKs and local provider servers: STOP/START, 21610 →
email fallback, SendGrid → SMTP failover, unsubscribe headers, in-app inbox, and a Twilio
outage paused by the provider's circuit breaker (in-process and through a real worker)."""

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
from return_notify.devtools.processes import start_worker, wait_for_log
from return_notify.pipeline.deliver import DeliverOutcome, deliver_batch
from return_notify.pipeline.ingest import ingest_batch
from return_notify.pipeline.maintenance import due_deliveries
from return_notify.producer import publish_many
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until
from tests.integration.provider_helpers import SmtpTestServer

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
        unsubscribe_secret="unsubscribe-secret-for-provider-tests",
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
    from return_notify.config.settings import reset_settings

    os.environ.update(RSN_TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN, RSN_PUBLIC_BASE_URL=PUBLIC)
    reset_settings()
    reset_settings()
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
        reset_settings()


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
    from return_notify.config.settings import reset_settings

    os.environ["RSN_UNSUBSCRIBE_SECRET"] = "test-unsubscribe-secret-0123456789"
    reset_settings()
    try:
        settings = settings_for(fakes)
        r = ingest([event("warehouse_received", tenant=uid("t-"), phone=None,
                          email="cleo@example.com")])
        run(settings, {"email": r.deliveries["email"]})
    finally:
        os.environ.pop("RSN_UNSUBSCRIBE_SECRET")
        reset_settings()
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


# ----------------------------------------------------------- circuit breaker --------

def attempt_book(ids: list[int]) -> dict[int, tuple[str, int, int]]:
    """Per delivery: state, its ``attempts`` counter, and its attempt rows (provider calls)."""
    with session_scope() as s:
        rows = s.execute(text(
            "SELECT d.id, d.state, d.attempts, (SELECT count(*) FROM delivery_attempts a "
            "WHERE a.delivery_id = d.id) FROM deliveries d WHERE d.id = ANY(:i)"), {"i": ids}).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def sms_events(tenant: str, n: int) -> list[dict[str, Any]]:
    return [event("label_created", tenant=tenant, phone=f"+1415555{i:04d}", email=None)
            for i in range(n)]


def test_a_twilio_outage_pauses_the_provider_and_deliveries_wait_without_spending_attempts(
    fakes: dict[str, Any],
) -> None:
    # given Twilio alone for SMS (one call at a time), answering 503 to everything
    settings = settings_for(fakes, breaker_trip_after=3, breaker_cooldown_s=1.5,
                            provider_concurrency=1, max_attempts=2)
    channel = build_channel("sms", settings)
    twilio = fakes["twilio"]
    twilio.set_failure_rate(1.0, "server_error", status=503)
    ids = ingest(sms_events(uid("t-"), 6)).deliveries["sms"]

    # when a batch meets the outage
    first = deliver_batch(session_scope, "sms", ids, channel, settings)

    # then three calls trip the breaker and the other three wait without a call
    assert len(twilio.messages()) == 3
    assert first.claimed == 6 and first.paused == 3
    book = attempt_book(ids)
    assert sorted(book.values()) == [("retrying", 0, 0)] * 3 + [("retrying", 1, 1)] * 3
    assert {did for did, _ in first.retry_soon} == set(ids)  # all come back by themselves

    # when the failed ones come back (their backoff is short) while the provider is paused
    again = deliver_batch(session_scope, "sms", ids, channel, settings)

    # then they are claimed and parked again: no call, no attempt spent, nothing dead
    assert again.claimed == 3 and again.paused == 3
    assert len(twilio.messages()) == 3
    assert attempt_book(ids) == book

    # when Twilio recovers: deliveries are retried as they fall due
    twilio.set_failure_rate(0.0)

    def all_sent() -> bool:
        deliver_batch(session_scope, "sms", ids, channel, settings)
        return all(state == "sent" for state, _, _ in attempt_book(ids).values())

    wait_until(all_sent, timeout_s=30, interval_s=0.2, what="every SMS sent after the cooldown")

    # then after the cooldown one trial call reopened the traffic and every message went out
    # once; the only provider calls are the three that tripped it and the six sends
    statuses = [m.status for m in twilio.messages()]
    assert statuses == [503] * 3 + [201] * 6
    assert sorted({m.body["To"] for m in twilio.messages()[3:]}) == [
        f"+1415555{i:04d}" for i in range(6)]
    final = attempt_book(ids)
    assert all(attempts == calls for _, attempts, calls in final.values())
    assert sorted(calls for _, _, calls in final.values()) == [1, 1, 1, 2, 2, 2]
    channel.close()


def test_a_pause_longer_than_a_countdown_waits_in_postgresql(fakes: dict[str, Any]) -> None:
    # given a cooldown beyond RSN_MAX_COUNTDOWN_S
    settings = settings_for(fakes, breaker_trip_after=2, breaker_cooldown_s=600,
                            max_countdown_s=60, provider_concurrency=1)
    channel = build_channel("sms", settings)
    fakes["twilio"].set_failure_rate(1.0, "server_error", status=503)
    ids = ingest(sms_events(uid("t-"), 4)).deliveries["sms"]

    # when the breaker trips inside the batch
    out = deliver_batch(session_scope, "sms", ids, channel, settings)

    # then the parked deliveries get no Celery countdown: next_attempt_at holds them, and
    # the sweeper does not pick them up before the cooldown is over
    assert out.paused == 2 and len(fakes["twilio"].messages()) == 2
    with session_scope() as s:
        parked = s.execute(text(
            "SELECT id, EXTRACT(EPOCH FROM next_attempt_at - now()), last_error FROM deliveries "
            "WHERE id = ANY(:i) AND attempts = 0"), {"i": ids}).all()
        due = due_deliveries(s, settings.lease_s).get("sms", [])
    assert len(parked) == 2
    assert {did for did, _ in out.retry_soon}.isdisjoint({p[0] for p in parked})
    assert all(p[1] > 500 for p in parked)
    assert all("twilio paused" in p[2] for p in parked)
    assert not {p[0] for p in parked} & set(due)
    channel.close()


def test_a_worker_pauses_twilio_in_an_outage_then_sends_everything(
    fakes: dict[str, Any], svc: Any, tmp_path: Any,
) -> None:
    # given a real worker (one process, one call at a time) whose only SMS provider is
    # Twilio, and Twilio answering 503 to everything
    twilio = fakes["twilio"]
    twilio.set_failure_rate(1.0, "server_error", status=503)
    env = svc.env(
        RSN_SMS_PROVIDER="twilio", RSN_TWILIO_ACCOUNT_SID=FAKE_ACCOUNT_SID,
        RSN_TWILIO_AUTH_TOKEN=FAKE_AUTH_TOKEN, RSN_TWILIO_FROM=SENDER,
        RSN_TWILIO_BASE_URL=twilio.base_url, RSN_PUBLIC_BASE_URL=PUBLIC,
        RSN_EMAIL_PROVIDER="sandbox", RSN_EMAIL_PROVIDERS="", RSN_INAPP_PROVIDER="sandbox",
        RSN_PROVIDER_CONCURRENCY="1", RSN_DELIVER_BATCH_SIZE="2", RSN_RATE_LIMITS="",
        RSN_BREAKER_TRIP_AFTER="3", RSN_BREAKER_COOLDOWN_S="2", RSN_MAX_ATTEMPTS="5",
        RSN_BACKOFF_BASE_S="0.1", RSN_BACKOFF_MAX_S="0.2",
    )
    worker = start_worker(env, concurrency=1, logdir=str(tmp_path))
    try:
        # when events arrive during the outage
        n, tenant = 8, uid("t-")
        publish_many(sms_events(tenant, n))
        wait_for_log(worker, "provider twilio paused for 2 s after 3 consecutive", 60)
        # the trial call after the cooldown fails too: paused again
        wait_for_log(worker, "provider twilio still failing (trial call", 60)
        # (meanwhile deliveries come back and are parked without a call)
        calls_in_outage = len(twilio.messages())
        twilio.set_failure_rate(0.0)  # Twilio recovers

        def sms_ids() -> list[int] | None:
            with session_scope() as s:
                rows = s.execute(text(
                    "SELECT d.id FROM deliveries d JOIN tenants t ON t.id = d.tenant_id "
                    "WHERE t.slug = :t AND d.channel = 'sms' AND d.state = 'sent'"),
                    {"t": tenant}).scalars().all()
            return list(rows) if len(rows) >= n else None

        sent = wait_until(sms_ids, timeout_s=60, interval_s=0.2, what=f"{n} SMS sent")
        wait_for_log(worker, "provider twilio answered the trial call: breaker closed", 10)
    finally:
        worker.stop(20)

    # then the provider saw three failures, one failed trial, and each message once
    assert calls_in_outage == 4
    statuses = [m.status for m in twilio.messages()]
    assert statuses == [503] * 4 + [201] * n
    book = attempt_book(sent)
    assert all(state == "sent" and attempts == calls for state, attempts, calls in book.values())
    assert sum(calls for _, _, calls in book.values()) == 4 + n
