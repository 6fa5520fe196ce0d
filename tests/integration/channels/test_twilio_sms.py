"""Twilio channel: the real ``twilio`` SDK against the local Twilio server."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from return_notify.channels.fakes.twilio_server import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    TwilioFakeServer,
)
from return_notify.channels.registry import build_channel
from return_notify.channels.twilio_sms import TwilioChannel
from return_notify.core.sms_segments import count_segments
from return_notify.errors import ConfigurationError, PermanentError, RateLimitedError, TransientError
from tests.integration.provider_helpers import closed_port_url, make_settings, sms_message

pytestmark = pytest.mark.integration

SERVICE_SID = "MG" + "1" * 32
CALLBACK = "https://notify.shop.example/v1/webhooks/twilio/status"


@pytest.fixture(autouse=True)
def _hostile_twilio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # These would rewrite 127.0.0.1 into 127.dublin.ie1.0.1 if the channel did not clear them.
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")


@pytest.fixture
def twilio() -> Iterator[TwilioFakeServer]:
    with TwilioFakeServer() as server:
        yield server


def make_channel(base_url: str, token: str = FAKE_AUTH_TOKEN, **kwargs: Any) -> TwilioChannel:
    options: dict[str, Any] = {"from_number": "+15005550006", "timeout_s": 1.0,
                               "public_base_url": "https://notify.shop.example", **kwargs}
    return TwilioChannel(FAKE_ACCOUNT_SID, token, base_url=base_url, **options)


@pytest.fixture
def channel(twilio: TwilioFakeServer) -> TwilioChannel:
    return make_channel(twilio.base_url)


def test_send_puts_the_documented_create_message_request_on_the_wire(
    twilio: TwilioFakeServer, channel: TwilioChannel
) -> None:
    # when
    result = channel.send(sms_message())

    # then
    assert result.provider == "twilio" and result.status == "queued"
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    [req] = twilio.messages()
    assert (req.method, req.status) == ("POST", 201)
    assert req.path == f"/2010-04-01/Accounts/{FAKE_ACCOUNT_SID}/Messages.json"
    credentials = base64.b64decode(req.headers["authorization"].removeprefix("Basic ")).decode()
    user, _, password = credentials.partition(":")
    assert (user, password) == (FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN)
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert req.body == {
        "To": "+14155550100", "From": "+15005550006", "StatusCallback": CALLBACK + "?delivery_id=7",
        "Body": "Shop: your return RMA-1001 is in transit. Track: https://trk.example/abc",
    }


def test_messaging_service_is_used_when_there_is_no_from_number(twilio: TwilioFakeServer) -> None:
    channel = make_channel(twilio.base_url, from_number=None, messaging_service_sid=SERVICE_SID)
    result = channel.send(sms_message())
    body = twilio.messages()[0].body
    assert body["MessagingServiceSid"] == SERVICE_SID and "From" not in body
    assert result.status == "accepted"


def test_long_text_is_cut_to_the_segment_budget_keeping_the_link(twilio: TwilioFakeServer) -> None:
    # given
    channel = make_channel(twilio.base_url, max_segments=2)
    long_text = "Your return is moving. " * 40 + "Track: https://trk.example/abc"

    # when
    channel.send(sms_message(text=long_text))

    # then
    sent = twilio.messages()[0].body["Body"]
    assert count_segments(sent) <= 2 < count_segments(long_text)
    assert sent.endswith("... https://trk.example/abc")


def test_wrong_auth_token_is_permanent(twilio: TwilioFakeServer) -> None:
    with pytest.raises(PermanentError) as info:
        make_channel(twilio.base_url, token="wrong").send(sms_message())
    assert info.value.code == "20003"


@pytest.mark.parametrize(
    ("kind", "options", "error", "code"),
    [
        ("rate_limit", {"retry_after_s": 3}, RateLimitedError, "20429"),
        ("server_error", {}, TransientError, "20500"),
        ("server_error", {"status": 503}, TransientError, "20503"),
        ("permanent", {"code": 21610}, PermanentError, "21610"),
        ("permanent", {"code": 21211}, PermanentError, "21211"),
        ("permanent", {"code": 21408}, PermanentError, "21408"),
        ("permanent", {"code": 21612}, PermanentError, "21612"),
        ("permanent", {"code": 21614}, PermanentError, "21614"),
        ("hang", {"seconds": 3}, TransientError, "connection"),  # client timeout is 1 s
        ("drop", {}, TransientError, "connection"),
    ],
)
def test_injected_failures_are_classified(
    twilio: TwilioFakeServer, channel: TwilioChannel,
    kind: Any, options: dict[str, Any], error: type[Exception], code: str,
) -> None:
    # given
    twilio.fail_next(1, kind, **options)

    # when
    with pytest.raises(error) as info:
        channel.send(sms_message())

    # then
    assert type(info.value) is error
    assert getattr(info.value, "code", None) == code
    assert getattr(info.value, "provider", None) == "twilio"
    if kind == "rate_limit":
        assert isinstance(info.value, RateLimitedError)
        assert info.value.retry_after_s == 3.0  # Retry-After, read past the SDK
    assert channel.send(sms_message()).provider == "twilio"
    assert len(twilio.messages()) == 2  # no hidden SDK retry (a retried create is a second SMS)


@pytest.mark.parametrize(
    ("recipient", "error", "code"),
    [
        ("+15005550001", PermanentError, "21211"),
        ("+15005550002", PermanentError, "21612"),
        ("+15005550003", PermanentError, "21408"),
        ("+15005550004", PermanentError, "21610"),
        ("+15005550009", PermanentError, "21614"),
        ("+15005550429", RateLimitedError, "20429"),
        ("+15005550500", TransientError, "20500"),
        ("0041 79 123", PermanentError, "21211"),  # not E.164
    ],
)
def test_magic_numbers(channel: TwilioChannel, recipient: str, error: type[Exception], code: str) -> None:
    with pytest.raises(error) as info:
        channel.send(sms_message(recipient))
    assert type(info.value) is error and getattr(info.value, "code", None) == code


def test_server_down_is_transient_and_recovers(twilio: TwilioFakeServer, channel: TwilioChannel) -> None:
    # given a pooled keep-alive connection, then the server goes away
    channel.send(sms_message())
    twilio.go_down(0.5)

    # when / then
    with pytest.raises(TransientError) as info:
        channel.send(sms_message())
    assert info.value.code == "connection"
    time.sleep(0.8)
    assert channel.send(sms_message()).provider == "twilio"


def test_nothing_listening_is_transient() -> None:
    with pytest.raises(TransientError):
        make_channel(closed_port_url()).send(sms_message())


def test_real_rate_window_answers_20429() -> None:
    with TwilioFakeServer(rate_limit_per_s=2) as limited:
        channel = make_channel(limited.base_url)
        errors = []
        for _ in range(5):
            try:
                channel.send(sms_message())
            except RateLimitedError as exc:
                errors.append(exc)
    assert errors and errors[0].code == "20429"


def test_registry_builds_twilio_from_settings(twilio: TwilioFakeServer) -> None:
    # given
    settings = make_settings(
        sms_provider="twilio", twilio_account_sid=FAKE_ACCOUNT_SID,
        twilio_auth_token=FAKE_AUTH_TOKEN, twilio_from="+15005550006",
        twilio_base_url=twilio.base_url, public_base_url="https://notify.shop.example",
        sms_max_segments=1,
    )

    # when
    result = build_channel("sms", settings).send(sms_message(text="x " * 200 + "https://t.example/1"))

    # then
    body = twilio.messages()[0].body
    assert result.provider == "twilio" and body["StatusCallback"].startswith(CALLBACK + "?delivery_id=")
    assert count_segments(body["Body"]) == 1 and body["Body"].endswith("https://t.example/1")


def test_registry_names_missing_twilio_settings() -> None:
    settings = make_settings(sms_provider="twilio", twilio_account_sid=FAKE_ACCOUNT_SID)
    with pytest.raises(ConfigurationError) as info:
        build_channel("sms", settings)
    assert "RSN_TWILIO_AUTH_TOKEN" in str(info.value) and "RSN_TWILIO_FROM" in str(info.value)
    assert "RSN_TWILIO_ACCOUNT_SID" not in str(info.value)


def test_server_runs_as_a_process_for_compose_and_the_demo() -> None:
    # given
    proc = subprocess.Popen(
        [sys.executable, "-m", "return_notify.channels.fakes.twilio_server", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()

        # when
        result = make_channel(base_url).send(sms_message())

        # then
        assert base_url.startswith("http://127.0.0.1:") and result.provider_message_id.startswith("SM")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
