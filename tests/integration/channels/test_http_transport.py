"""Provider transport: pooled keep-alive connections and per-call timing, through the real
SDKs against the local provider servers."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest
from python_http_client.exceptions import HTTPError as SdkHTTPError
from python_http_client.exceptions import TooManyRequestsError, UnauthorizedError

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.fakes import Fault
from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.fakes.twilio_server import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    TwilioFakeServer,
)
from return_notify.channels.http_transport import HttpPool, PooledSendGridClient
from return_notify.channels.sendgrid_email import SendGridChannel
from return_notify.channels.twilio_sms import TwilioChannel
from return_notify.errors import DeliveryError, TransientError
from tests.integration.provider_helpers import IDENTITY, closed_port_url, email_message, sms_message

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid() -> Iterator[SendGridFakeServer]:
    with SendGridFakeServer() as server:
        yield server


@pytest.fixture
def twilio() -> Iterator[TwilioFakeServer]:
    with TwilioFakeServer() as server:
        yield server


def test_sendgrid_reuses_keep_alive_connections(sendgrid: SendGridFakeServer) -> None:
    # given
    channel = SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=sendgrid.base_url, timeout_s=5)
    channel.max_parallel = 4
    messages = [email_message(recipient=f"c{i}@customer.example", delivery_id=i)
                for i in range(40)]

    # when
    results = channel.send_many(messages)

    # then: every mail went out, over at most one connection per parallel sender
    assert all(isinstance(r, SendResult) and r.provider_message_id for r in results)
    assert len(sendgrid.mails()) == 40
    assert 1 <= channel._http.pool.connections_opened() <= 4
    channel.close()


def test_twilio_pool_grows_with_provider_concurrency(twilio: TwilioFakeServer) -> None:
    # given: more parallel senders than the SDK's default pool of 10
    channel = TwilioChannel(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number="+15005550006",
                            base_url=twilio.base_url, timeout_s=5)
    channel.max_parallel = 24
    messages = [sms_message(recipient=f"+1415555{i:04d}", delivery_id=i) for i in range(96)]

    # when
    results = channel.send_many(messages)

    # then: no connection was thrown away and reopened for lack of room in the pool
    assert all(isinstance(r, SendResult) for r in results)
    assert len(twilio.messages()) == 96
    assert channel._http.pool.size == 24
    assert 1 <= channel._http.pool.connections_opened() <= 24
    channel.close()


def test_pooled_client_raises_the_sdk_errors_with_status_body_and_headers(
    sendgrid: SendGridFakeServer,
) -> None:
    # given
    good = PooledSendGridClient(sendgrid.base_url, {"Authorization": f"Bearer {FAKE_API_KEY}"},
                                version=3, timeout=5)
    bad = PooledSendGridClient(sendgrid.base_url, {"Authorization": "Bearer SG.wrong"},
                               version=3, timeout=5)
    body = {"personalizations": [{"to": [{"email": "a@customer.example"}]}],
            "from": {"email": "returns@shop.example"}, "subject": "s",
            "content": [{"type": "text/plain", "value": "t"}]}

    # when / then: accepted, with the SDK's Response
    ok = good.mail.send.post(request_body=body)
    assert ok.status_code == 202 and ok.headers.get("x-message-id")

    # an unknown key: the SDK's UnauthorizedError, carrying SendGrid's error body
    with pytest.raises(UnauthorizedError) as denied:
        bad.mail.send.post(request_body=body)
    assert denied.value.status_code == 401 and b"errors" in denied.value.body

    # throttled: TooManyRequestsError with the reset header, as the stock client gives it
    sendgrid.faults.fail_next(1, Fault("rate_limit", retry_after_s=3))
    with pytest.raises(TooManyRequestsError) as throttled:
        good.mail.send.post(request_body=body)
    assert isinstance(throttled.value, SdkHTTPError)
    assert throttled.value.headers.get("X-RateLimit-Reset") is not None


def test_unreachable_sendgrid_is_a_transient_connection_error() -> None:
    channel = SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=closed_port_url(), timeout_s=2)
    with pytest.raises(TransientError) as exc:
        channel.send(email_message())
    assert exc.value.code == "connection"


def test_the_environment_is_read_once_for_the_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a proxy for everything but one host, and a company CA bundle
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "bypass.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/company.pem")

    # when
    proxied, bypassed = HttpPool("https://api.sendgrid.com", 16), HttpPool("https://bypass.example")

    # then: fixed on the pool when it is built, as requests would read them
    assert proxied.proxy == "http://proxy.internal:3128"
    assert bypassed.proxy is None
    assert proxied._ca_certs == "/etc/ssl/certs/company.pem"
    assert proxied.size == 16 and bypassed.size == 10


def test_twilio_errors_keep_the_sdk_classification_and_retry_after(
    twilio: TwilioFakeServer,
) -> None:
    from return_notify.errors import RateLimitedError

    channel = TwilioChannel(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number="+15005550006",
                            base_url=twilio.base_url, timeout_s=5)
    twilio.faults.fail_next(1, Fault("rate_limit", retry_after_s=7))
    with pytest.raises(RateLimitedError) as limited:
        channel.send(sms_message())
    assert limited.value.retry_after_s == 7
    # the form fields went out as the SDK encodes them
    sent = channel.send(sms_message(text="Ünïcode & more = fine"))
    assert sent.provider_message_id.startswith("SM")
    assert twilio.messages()[-1].body["Body"] == "Ünïcode & more = fine"
    channel.close()


def test_unreachable_twilio_is_a_transient_connection_error() -> None:
    channel = TwilioChannel(FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number="+15005550006",
                            base_url=closed_port_url(), timeout_s=2)
    with pytest.raises(TransientError) as exc:
        channel.send(sms_message())
    assert exc.value.code == "connection"


class _SlowChannel(Channel):
    """Answers after a delay that depends on the message, to check per-call timing."""

    provider = "slow"
    channel = "sms"

    def send(self, message: OutboundMessage) -> SendResult:
        time.sleep(0.02 * message.delivery_id)
        return SendResult(self.provider, f"m{message.delivery_id}")


class _BatchChannel(Channel):
    provider = "batch"
    channel = "inapp"

    def send(self, message: OutboundMessage) -> SendResult:
        raise AssertionError("a batch channel sends through send_many")

    def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendResult | DeliveryError]:
        time.sleep(0.05)
        return [SendResult(self.provider, str(m.delivery_id)) for m in messages]


@pytest.mark.parametrize("parallel", [1, 3])
def test_each_provider_call_is_timed_on_its_own(parallel: int) -> None:
    channel = _SlowChannel()
    channel.max_parallel = parallel
    messages = [sms_message(delivery_id=i) for i in (1, 5, 2)]

    timed = channel.send_many_timed(messages)

    assert [r.provider_message_id for r, _ in timed] == ["m1", "m5", "m2"]  # type: ignore[union-attr]
    ms = [m for _, m in timed]
    assert ms[1] >= 100 and ms[1] > ms[2] > ms[0] >= 20  # the slow one, not an average
    channel.close()


def test_a_batch_call_divides_its_time_among_its_messages() -> None:
    timed = _BatchChannel().send_many_timed([sms_message(delivery_id=i) for i in range(5)])
    assert len(timed) == 5 and len({ms for _, ms in timed}) == 1  # one share each
    assert timed[0][1] * 5 >= 49  # the 50 ms call, divided among its five messages
