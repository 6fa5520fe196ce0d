"""SendGrid channel: the real ``sendgrid`` SDK against the local SendGrid server."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from return_notify.channels.base import SendResult
from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.sendgrid_email import SendGridChannel, retry_after_s
from return_notify.errors import PermanentError, RateLimitedError, TransientError
from tests.integration.provider_helpers import IDENTITY, closed_port_url, email_message

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid() -> Iterator[SendGridFakeServer]:
    with SendGridFakeServer() as server:
        yield server


@pytest.fixture
def channel(sendgrid: SendGridFakeServer) -> SendGridChannel:
    return SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=sendgrid.base_url, timeout_s=1.0)


def test_send_puts_the_documented_mail_send_request_on_the_wire(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    # when
    result = channel.send(email_message())

    # then
    assert result.provider == "sendgrid" and len(result.provider_message_id) == 22
    [req] = sendgrid.mails()
    assert (req.method, req.path, req.status) == ("POST", "/v3/mail/send", 202)
    assert req.headers["authorization"] == f"Bearer {FAKE_API_KEY}"
    assert req.headers["content-type"] == "application/json"
    body = req.body
    assert body["from"] == {"email": "returns@shop.example", "name": "Shop Returns"}
    assert body["reply_to"] == {"email": "help@shop.example"}
    assert body["personalizations"] == [{"to": [{"email": "ann@customer.example"}]}]
    assert body["subject"] == "Your return RMA-1001 was received"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"] == {
        "List-Unsubscribe": "<https://notify.shop.example/v1/unsubscribe/tok-123>, "
                            "<mailto:unsubscribe@shop.example?subject=unsubscribe%20tok-123>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    # custom args come back on every webhook event: ids only, no personal data
    assert body["custom_args"] == {"delivery_id": "42"}
    assert "categories" not in body


def test_unsubscribe_header_from_the_pipeline_wins(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    given = "<https://notify.shop.example/v1/unsubscribe/from-pipeline>"
    channel.send(email_message(headers={"List-Unsubscribe": given}))
    headers = sendgrid.mails()[0].body["headers"]
    assert headers == {"List-Unsubscribe": given, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_text_only_email_without_unsubscribe_token(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    channel.send(email_message(html=None, metadata={"delivery_id": 42}))
    body = sendgrid.mails()[0].body
    assert body["content"] == [{"type": "text/plain", "value": "Hi Ann, we received your return RMA-1001."}]
    assert "headers" not in body


def test_wrong_api_key_is_permanent(sendgrid: SendGridFakeServer) -> None:
    channel = SendGridChannel("SG.wrong", IDENTITY, base_url=sendgrid.base_url, timeout_s=1.0)
    with pytest.raises(PermanentError) as info:
        channel.send(email_message())
    assert info.value.code == "401" and "authorization grant is invalid" in str(info.value)


def test_invalid_sender_is_rejected_by_validation_with_the_field(sendgrid: SendGridFakeServer) -> None:
    channel = SendGridChannel(FAKE_API_KEY, replace(IDENTITY, from_email="not-an-address"),
                              base_url=sendgrid.base_url, timeout_s=1.0)
    with pytest.raises(PermanentError) as info:
        channel.send(email_message())
    assert info.value.code == "400" and "(from.email)" in str(info.value)


def test_missing_subject_fails_before_any_request(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    with pytest.raises(PermanentError):
        channel.send(email_message(subject=None))
    assert sendgrid.requests() == []


@pytest.mark.parametrize(
    ("kind", "options", "error", "code"),
    [
        ("rate_limit", {"retry_after_s": 5}, RateLimitedError, "429"),
        ("server_error", {}, TransientError, "500"),
        ("server_error", {"status": 502}, TransientError, "502"),
        ("server_error", {"status": 503}, TransientError, "503"),
        ("permanent", {}, PermanentError, "400"),
        ("permanent", {"status": 403}, PermanentError, "403"),
        ("permanent", {"status": 413}, PermanentError, "413"),
        ("hang", {"seconds": 3}, TransientError, "connection"),  # client timeout is 1 s
        ("drop", {}, TransientError, "connection"),
    ],
)
def test_injected_failures_are_classified(
    sendgrid: SendGridFakeServer, channel: SendGridChannel,
    kind: Any, options: dict[str, Any], error: type[Exception], code: str,
) -> None:
    # given
    sendgrid.fail_next(1, kind, **options)

    # when
    with pytest.raises(error) as info:
        channel.send(email_message())

    # then
    assert type(info.value) is error
    assert getattr(info.value, "code", None) == code
    assert getattr(info.value, "provider", None) == "sendgrid"
    if kind == "rate_limit":
        assert isinstance(info.value, RateLimitedError)
        assert 3.5 <= (info.value.retry_after_s or 0) <= 6.0  # from X-RateLimit-Reset
    # and the next call goes through again; the SDK retried nothing behind our back
    assert channel.send(email_message()).provider == "sendgrid"
    assert len(sendgrid.mails()) == 2


def test_rate_limit_reset_in_the_past_still_waits_one_second(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    sendgrid.fail_next(1, "rate_limit", retry_after_s=0)
    with pytest.raises(RateLimitedError) as info:
        channel.send(email_message())
    assert info.value.retry_after_s == 1.0


def test_real_rate_window_answers_429() -> None:
    with SendGridFakeServer(rate_limit_per_s=2) as limited:
        channel = SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=limited.base_url, timeout_s=1.0)
        outcomes: list[SendResult | RateLimitedError] = []
        for _ in range(5):
            try:
                outcomes.append(channel.send(email_message()))
            except RateLimitedError as exc:
                outcomes.append(exc)
    assert any(isinstance(o, RateLimitedError) for o in outcomes)
    statuses = [r.status for r in limited.mails()]
    assert statuses.count(202) <= 4 and 429 in statuses


@pytest.mark.parametrize(
    ("recipient", "error", "code"),
    [("ann+fail-400@customer.example", PermanentError, "400"),
     ("ann+fail-503@customer.example", TransientError, "503"),
     ("ann+fail-429@customer.example", RateLimitedError, "429")],
)
def test_magic_recipients(
    channel: SendGridChannel, recipient: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as info:
        channel.send(email_message(recipient))
    assert getattr(info.value, "code", None) == code


def test_server_down_is_transient_and_recovers(
    sendgrid: SendGridFakeServer, channel: SendGridChannel
) -> None:
    # given
    sendgrid.go_down(0.5)

    # when / then
    with pytest.raises(TransientError) as info:
        channel.send(email_message())
    assert type(info.value) is TransientError and info.value.code == "connection"
    time.sleep(0.8)
    assert channel.send(email_message()).provider == "sendgrid"


def test_nothing_listening_is_transient() -> None:
    channel = SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=closed_port_url(), timeout_s=1.0)
    with pytest.raises(TransientError):
        channel.send(email_message())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Reset": "1030"}, 30.0),
        ({"X-RateLimit-Reset": "999"}, 1.0),
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "Thu, 01 Jan 1970 00:17:00 GMT"}, 20.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers, now=1000.0) == expected


def test_control_endpoint_steers_a_server_over_http(sendgrid: SendGridFakeServer) -> None:
    import urllib.request

    def post(path: str, payload: dict[str, Any]) -> Any:
        req = urllib.request.Request(sendgrid.base_url + path, json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=2) as resp:
            return json.loads(resp.read())

    channel = SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=sendgrid.base_url, timeout_s=1.0)
    assert post("/_fake/faults", {"kind": "server_error", "count": 1, "status": 503}) == {"ok": True}
    with pytest.raises(TransientError):
        channel.send(email_message())
    channel.send(email_message())
    with urllib.request.urlopen(sendgrid.base_url + "/_fake/requests", timeout=2) as resp:
        recorded = json.loads(resp.read())
    assert [r["status"] for r in recorded] == [503, 202]


def test_logs_mask_the_recipient(
    sendgrid: SendGridFakeServer, channel: SendGridChannel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="return_notify")
    sendgrid.fail_next(1, "permanent")
    with pytest.raises(PermanentError):
        channel.send(email_message())
    channel.send(email_message())
    assert "a***@customer.example" in caplog.text
    assert "ann@customer.example" not in caplog.text and FAKE_API_KEY not in caplog.text
