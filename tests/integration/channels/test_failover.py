"""Email failover: SendGrid (real SDK, local server) first, SMTP (real server) second,
each behind its circuit breaker; and the breaker of a provider that is alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from return_notify.channels.breaker import BreakerChannel, CircuitBreaker, ProviderPausedError
from return_notify.channels.failover import FailoverChannel
from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.registry import build_channel
from return_notify.channels.sendgrid_email import SendGridChannel
from return_notify.channels.smtp_email import SmtpChannel
from return_notify.errors import ConfigurationError, PermanentError, RateLimitedError, TransientError
from tests.integration.provider_helpers import (
    IDENTITY,
    SmtpTestServer,
    closed_port_url,
    email_message,
    make_settings,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid() -> Iterator[SendGridFakeServer]:
    with SendGridFakeServer() as server:
        yield server


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with SmtpTestServer() as server:
        yield server


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_failover(sendgrid_url: str, smtp_url: str, clock: FakeClock | None = None) -> FailoverChannel:
    clock = clock or FakeClock()
    return FailoverChannel([
        BreakerChannel(SendGridChannel(FAKE_API_KEY, IDENTITY, base_url=sendgrid_url, timeout_s=1.0),
                       CircuitBreaker("sendgrid", trip_after=3, cooldown_s=30.0, clock=clock)),
        BreakerChannel(SmtpChannel(smtp_url, IDENTITY, timeout_s=1.0),
                       CircuitBreaker("smtp", trip_after=3, cooldown_s=30.0, clock=clock)),
    ])


def test_primary_answers_and_the_secondary_is_untouched(
    sendgrid: SendGridFakeServer, smtp: SmtpTestServer
) -> None:
    result = make_failover(sendgrid.base_url, smtp.url()).send(email_message())
    assert result.provider == "sendgrid"
    assert len(sendgrid.mails()) == 1 and smtp.messages == []


@pytest.mark.parametrize(
    ("kind", "options", "status"),
    [("server_error", {}, 500), ("server_error", {"status": 503}, 503),
     ("rate_limit", {}, 429), ("hang", {"seconds": 3}, 202), ("drop", {}, 0)],
)
def test_transient_primary_failure_is_sent_through_smtp(
    sendgrid: SendGridFakeServer, smtp: SmtpTestServer, kind: Any, options: dict[str, Any], status: int
) -> None:
    # given
    sendgrid.fail_next(1, kind, **options)

    # when
    result = make_failover(sendgrid.base_url, smtp.url()).send(email_message())

    # then
    assert result.provider == "smtp"
    assert [r.status for r in sendgrid.mails()] == [status]
    assert len(smtp.messages) == 1
    assert smtp.messages[0].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_permanent_failure_does_not_fail_over(sendgrid: SendGridFakeServer, smtp: SmtpTestServer) -> None:
    sendgrid.fail_next(1, "permanent")
    with pytest.raises(PermanentError) as info:
        make_failover(sendgrid.base_url, smtp.url()).send(email_message())
    assert info.value.provider == "sendgrid" and smtp.messages == []


def test_when_all_fail_the_last_transient_error_is_raised(sendgrid: SendGridFakeServer) -> None:
    sendgrid.fail_next(1, "rate_limit", retry_after_s=5)
    with pytest.raises(TransientError) as info:
        make_failover(sendgrid.base_url, closed_port_url("smtp")).send(email_message())
    assert info.value.provider == "smtp" and info.value.code == "connection"
    assert not isinstance(info.value, RateLimitedError)


def test_a_failing_primary_is_skipped_for_a_cooldown_then_tried_again(
    sendgrid: SendGridFakeServer, smtp: SmtpTestServer
) -> None:
    # given a primary that always fails
    clock = FakeClock()
    channel = make_failover(sendgrid.base_url, smtp.url(), clock)
    sendgrid.set_failure_rate(1.0, "server_error", status=503)

    # when: three failures trip it, the next messages go straight to SMTP
    for i in range(5):
        assert channel.send(email_message(delivery_id=i)).provider == "smtp"
    assert len(sendgrid.mails()) == 3

    # then: after the cooldown it is tried again and, healthy, takes the traffic back
    sendgrid.set_failure_rate(0.0)
    clock.now += 31
    assert channel.send(email_message()).provider == "sendgrid"
    assert len(smtp.messages) == 5


def test_registry_builds_the_failover_order_from_settings(
    sendgrid: SendGridFakeServer, smtp: SmtpTestServer
) -> None:
    # given
    settings = make_settings(
        email_providers="sendgrid, smtp", sendgrid_api_key=FAKE_API_KEY,
        sendgrid_base_url=sendgrid.base_url, smtp_url=smtp.url(), email_from="returns@shop.example",
        email_from_name="Shop Returns", unsubscribe_mailto="unsubscribe@shop.example",
        public_base_url="https://notify.shop.example",
    )
    sendgrid.fail_next(1, "server_error")

    # when
    channel = build_channel("email", settings)
    result = channel.send(email_message())

    # then
    assert isinstance(channel, FailoverChannel)
    assert [c.provider for c in channel.channels] == ["sendgrid", "smtp"]
    assert channel.provider == "failover:sendgrid,smtp" and result.provider == "smtp"
    assert smtp.messages[0].message["From"] == "Shop Returns <returns@shop.example>"
    channel.close()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"email_provider": "sendgrid"}, "RSN_SENDGRID_API_KEY"),
        ({"email_provider": "smtp"}, "RSN_SMTP_URL"),
        ({"email_providers": "sendgrid,smtp", "sendgrid_api_key": "k"}, "RSN_SMTP_URL"),
        ({"email_providers": "sendgrid,mailgun"}, "RSN_EMAIL_PROVIDERS"),
        ({"email_providers": "smtp,smtp", "smtp_url": "smtp://h"}, "RSN_EMAIL_PROVIDERS"),
    ],
)
def test_registry_names_the_missing_or_wrong_setting(overrides: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        build_channel("email", make_settings(**overrides))


def test_when_both_providers_are_paused_neither_is_called(
    sendgrid: SendGridFakeServer, smtp: SmtpTestServer
) -> None:
    # given SendGrid answering 503 and SMTP refusing the mailbox (450) until both trip
    clock = FakeClock()
    channel = make_failover(sendgrid.base_url, smtp.url(), clock)
    sendgrid.set_failure_rate(1.0, "server_error", status=503)
    for i in range(3):
        with pytest.raises(TransientError):
            channel.send(email_message("busy@customer.example", delivery_id=i))
    sendgrid.set_failure_rate(0.0)

    # when a message both would now accept comes 10 s later
    clock.now += 10
    with pytest.raises(RateLimitedError) as info:
        channel.send(email_message())

    # then neither was called: the wait is the cooldown left, and the pipeline parks it
    assert isinstance(info.value, ProviderPausedError) and info.value.retry_after_s == 20
    assert channel.paused_s() == 20
    assert len(sendgrid.mails()) == 3 and smtp.messages == []


def test_a_single_provider_is_guarded_by_its_own_breaker(smtp: SmtpTestServer) -> None:
    # given SMTP alone, on a server that refuses mail for now ("busy" → 450, transient)
    settings = make_settings(email_provider="smtp", smtp_url=smtp.url(),
                             breaker_trip_after=2, breaker_cooldown_s=30)
    channel = build_channel("email", settings)
    assert isinstance(channel, BreakerChannel) and isinstance(channel.inner, SmtpChannel)
    assert channel.provider == "smtp"

    # when two sends fail transiently
    for i in range(2):
        with pytest.raises(TransientError) as failed:
            channel.send(email_message("busy@customer.example", delivery_id=i))
        assert failed.value.code == "450"

    # then the third, which the server would accept, is not even tried: it waits
    with pytest.raises(ProviderPausedError) as info:
        channel.send(email_message("ann@customer.example"))
    assert 0 < (info.value.retry_after_s or 0) <= 30
    assert smtp.messages == []
    channel.close()
