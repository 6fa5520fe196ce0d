"""The provider circuit breaker: its state machine on an injected clock, the guarded
channel, failover over paused providers, the registry's wiring and the metric (no network)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import deque

import pytest
from pydantic import ValidationError

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    TRIAL_WAIT_S,
    BreakerChannel,
    CircuitBreaker,
    ProviderPausedError,
    paused_s,
)
from return_notify.channels.failover import FailoverChannel
from return_notify.config.settings import Settings
from return_notify.errors import PermanentError, RateLimitedError, TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(Channel):
    """Answers each send with the next scripted outcome ("ok" or an exception)."""

    def __init__(self, provider: str = "twilio", script: list[str | Exception] | None = None) -> None:
        self.provider = provider
        self.channel = "sms"
        self.script: deque[str | Exception] = deque(script or [])
        self.calls = 0

    def send(self, message: OutboundMessage) -> SendResult:
        self.calls += 1
        step = self.script.popleft() if self.script else "ok"
        if isinstance(step, Exception):
            raise step
        return SendResult(self.provider, f"id-{self.calls}")


def msg(i: int = 1) -> OutboundMessage:
    return OutboundMessage(delivery_id=i, channel="sms", recipient="+14155550100", text="hi")


def down(code: str = "503") -> TransientError:
    return TransientError("provider down", code=code, provider="twilio")


def guarded(script: list[str | Exception], clock: Clock, trip_after: int = 3,
            cooldown_s: float = 30.0, provider: str = "twilio",
            events: list[tuple[str, bool]] | None = None) -> tuple[BreakerChannel, Scripted]:
    inner = Scripted(provider, script)
    breaker = CircuitBreaker(provider, trip_after, cooldown_s, clock=clock, max_pause_s=300.0,
                             listener=(lambda p, o: events.append((p, o))) if events is not None
                             else None)
    return BreakerChannel(inner, breaker), inner


def fail_times(channel: Channel, n: int) -> None:
    for i in range(n):
        with pytest.raises(TransientError) as info:
            channel.send(msg(i))
        assert not isinstance(info.value, ProviderPausedError)


def test_trips_after_n_consecutive_transient_failures_then_stops_calling() -> None:
    # given
    clock = Clock()
    channel, inner = guarded([down()] * 10, clock)

    # when: three failures in a row
    fail_times(channel, 3)

    # then: the provider is no longer called; the caller is told how long to wait
    assert channel.breaker.state == OPEN
    clock.now += 12.5
    with pytest.raises(RateLimitedError) as info:
        channel.send(msg())
    assert isinstance(info.value, ProviderPausedError)
    assert info.value.retry_after_s == pytest.approx(17.5)
    assert info.value.provider == "twilio" and info.value.code == "provider_paused"
    assert inner.calls == 3
    assert channel.paused_s() == pytest.approx(17.5) and paused_s(channel) == pytest.approx(17.5)


def test_a_success_between_failures_resets_the_count() -> None:
    clock = Clock()
    channel, inner = guarded([down(), down(), "ok", down(), down(), "ok"], clock)
    for expected in ("fail", "fail", "ok", "fail", "fail", "ok"):
        if expected == "ok":
            assert channel.send(msg()).provider == "twilio"
        else:
            fail_times(channel, 1)
    assert channel.breaker.state == CLOSED and inner.calls == 6


def test_permanent_error_counts_as_up_and_is_raised() -> None:
    # given two transient failures
    clock = Clock()
    bad_number = PermanentError("invalid number", code="21211", provider="twilio")
    channel, inner = guarded([down(), down(), bad_number, down(), down()], clock)
    fail_times(channel, 2)

    # when the provider answers with a permanent error
    with pytest.raises(PermanentError):
        channel.send(msg())

    # then the count starts again: two more failures do not trip it
    fail_times(channel, 2)
    assert channel.breaker.state == CLOSED and inner.calls == 5


def test_unexpected_exceptions_count_as_transient_failures() -> None:
    clock = Clock()
    channel, _ = guarded([RuntimeError("sdk bug")] * 3, clock)
    for _i in range(3):
        with pytest.raises(RuntimeError):
            channel.send(msg())
    assert channel.breaker.state == OPEN


def test_after_the_cooldown_one_trial_call_closes_it_on_success() -> None:
    # given a tripped breaker whose cooldown is over
    clock = Clock()
    channel, inner = guarded([down()] * 3, clock)
    fail_times(channel, 3)
    clock.now += 30.0
    assert channel.breaker.state == HALF_OPEN and channel.paused_s() == 0.0

    # when the trial is in flight, other callers wait for its verdict
    ticket = channel.breaker.admit()
    with pytest.raises(ProviderPausedError) as info:
        channel.send(msg())
    assert info.value.retry_after_s == TRIAL_WAIT_S and inner.calls == 3
    assert channel.paused_s() == TRIAL_WAIT_S

    # then its success closes the breaker and traffic flows again
    channel.breaker.success(ticket)
    assert channel.breaker.state == CLOSED
    assert [channel.send(msg(i)).provider for i in range(3)] == ["twilio"] * 3
    assert inner.calls == 6


def test_a_failed_trial_reopens_for_a_full_cooldown() -> None:
    # given
    clock = Clock()
    channel, inner = guarded([down()] * 4, clock)
    fail_times(channel, 3)
    clock.now += 31.0

    # when the single trial call fails
    fail_times(channel, 1)

    # then the provider pauses again, for the whole cooldown
    assert channel.breaker.state == OPEN and inner.calls == 4
    with pytest.raises(ProviderPausedError) as info:
        channel.send(msg())
    assert info.value.retry_after_s == pytest.approx(30.0)
    # and a trial that succeeds after the next cooldown closes it
    clock.now += 30.0
    assert channel.send(msg()).provider == "twilio" and channel.breaker.state == CLOSED


def test_a_permanent_error_on_the_trial_closes_the_breaker() -> None:
    clock = Clock()
    channel, _ = guarded([down(), down(), down(), PermanentError("STOP", code="21610")], clock)
    fail_times(channel, 3)
    clock.now += 30.0
    with pytest.raises(PermanentError):
        channel.send(msg())
    assert channel.breaker.state == CLOSED


def test_a_longer_retry_after_lengthens_the_pause_up_to_the_cap() -> None:
    clock = Clock()
    slow_down = RateLimitedError("429", code="20429", provider="twilio", retry_after_s=90.0)
    channel, _ = guarded([down(), down(), slow_down], clock)
    fail_times(channel, 3)
    with pytest.raises(ProviderPausedError) as info:
        channel.send(msg())
    assert info.value.retry_after_s == pytest.approx(90.0)

    capped, _ = guarded([RateLimitedError("429", retry_after_s=10_000.0)] * 3, clock)
    fail_times(capped, 3)
    assert capped.paused_s() == pytest.approx(300.0)  # max_pause_s


def test_calls_admitted_before_it_opened_change_nothing() -> None:
    # given three calls in flight while the breaker is closed
    clock = Clock()
    breaker = CircuitBreaker("sendgrid", trip_after=2, cooldown_s=30.0, clock=clock)
    early = [breaker.admit() for _ in range(3)]

    # when two fail (it opens) and the third reports late
    breaker.failure(early[0], down())
    breaker.failure(early[1], down())
    assert breaker.state == OPEN
    clock.now += 10.0
    breaker.success(early[2])  # a late success does not end the pause early
    assert breaker.state == OPEN and breaker.remaining_s() == pytest.approx(20.0)
    clock.now += 20.0
    trial = breaker.admit()
    breaker.failure(early[2], down())  # nor does a late failure decide the trial

    # then only the trial's own outcome counts
    assert breaker.state == HALF_OPEN
    breaker.success(trial)
    assert breaker.state == CLOSED


def test_a_trial_that_never_reports_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("smtp", trip_after=1, cooldown_s=30.0, clock=clock)
    breaker.failure(breaker.admit(), down())
    clock.now += 30.0
    lost = breaker.admit()
    clock.now += 29.0
    with pytest.raises(ProviderPausedError):
        breaker.admit()
    clock.now += 1.0
    second = breaker.admit()
    breaker.failure(lost, down())  # the lost trial's verdict arrives too late to count
    assert breaker.state == HALF_OPEN
    breaker.success(second)
    assert breaker.state == CLOSED


def test_an_interrupted_trial_frees_the_slot_at_once() -> None:
    clock = Clock()
    breaker = CircuitBreaker("smtp", trip_after=1, cooldown_s=30.0, clock=clock)
    breaker.failure(breaker.admit(), down())
    clock.now += 30.0
    breaker.release(breaker.admit())
    assert breaker.remaining_s() == 0.0
    breaker.success(breaker.admit())
    assert breaker.state == CLOSED


def test_opening_and_closing_log_a_warning_and_tell_the_listener(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given
    clock = Clock()
    events: list[tuple[str, bool]] = []
    channel, _ = guarded([down("connection")] * 4, clock, events=events)

    # when it trips, fails its trial, then recovers
    with caplog.at_level(logging.INFO, logger="return_notify.channels.breaker"):
        fail_times(channel, 3)
        clock.now += 30.0
        fail_times(channel, 1)
        clock.now += 30.0
        channel.send(msg())

    # then
    assert events == [("twilio", True), ("twilio", True), ("twilio", False)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "provider twilio paused for 30 s after 3 consecutive transient failures "
        "(last: connection); deliveries wait without spending attempts",
        "provider twilio still failing (trial call: connection): paused for another 30 s; "
        "deliveries wait without spending attempts",
        "provider twilio answered the trial call: breaker closed, sends resume",
    ]


def test_a_broken_listener_never_fails_a_send() -> None:
    def boom(provider: str, is_open: bool) -> None:
        raise RuntimeError("metrics down")

    clock = Clock()
    breaker = CircuitBreaker("twilio", trip_after=1, clock=clock, listener=boom)
    channel = BreakerChannel(Scripted("twilio", [down()]), breaker)
    fail_times(channel, 1)
    assert breaker.state == OPEN


@pytest.mark.parametrize(("trip_after", "cooldown_s"), [(0, 30.0), (3, 0.0), (3, -1.0)])
def test_nonsense_parameters_are_refused(trip_after: int, cooldown_s: float) -> None:
    with pytest.raises(ValueError, match="trip_after|cooldown_s"):
        CircuitBreaker("twilio", trip_after, cooldown_s)


# --------------------------------------------------------------- failover ----------

def test_failover_skips_a_paused_provider_without_calling_it() -> None:
    # given a primary that has tripped
    clock = Clock()
    primary, p_inner = guarded([down()] * 3, clock, provider="sendgrid")
    secondary, s_inner = guarded([], clock, provider="smtp")
    fail_times(primary, 3)
    chain = FailoverChannel([primary, secondary])

    # when
    results = [chain.send(msg(i)).provider for i in range(4)]

    # then
    assert results == ["smtp"] * 4 and p_inner.calls == 3 and s_inner.calls == 4
    assert chain.paused_s() == 0.0


def test_when_every_provider_is_paused_none_is_called() -> None:
    # given both providers tripped, the secondary 10 s later than the primary
    clock = Clock()
    primary, p_inner = guarded([down()] * 3, clock, provider="sendgrid")
    secondary, s_inner = guarded([down()] * 3, clock, provider="smtp")
    fail_times(primary, 3)
    clock.now += 10.0
    fail_times(secondary, 3)
    chain = FailoverChannel([primary, secondary])
    clock.now += 5.0

    # when
    with pytest.raises(RateLimitedError) as info:
        chain.send(msg())

    # then the shortest remaining cooldown is the wait, and nobody was called
    assert isinstance(info.value, ProviderPausedError)
    assert info.value.provider == "sendgrid" and info.value.retry_after_s == pytest.approx(15.0)
    assert chain.paused_s() == pytest.approx(15.0)
    assert (p_inner.calls, s_inner.calls) == (3, 3)


def test_a_paused_primary_and_a_failing_secondary_raise_the_real_failure() -> None:
    clock = Clock()
    primary, _ = guarded([down()] * 3, clock, provider="sendgrid")
    secondary, _ = guarded([down("connection")], clock, provider="smtp")
    fail_times(primary, 3)
    with pytest.raises(TransientError) as info:
        FailoverChannel([primary, secondary]).send(msg())
    assert not isinstance(info.value, ProviderPausedError)
    assert info.value.code == "connection"


def test_channels_without_a_breaker_are_never_paused() -> None:
    assert paused_s(Scripted()) == 0.0
    assert FailoverChannel([Scripted("a"), Scripted("b")]).paused_s() == 0.0


# --------------------------------------------------------------- wiring ------------

def settings(**values: object) -> Settings:
    values.setdefault("unsubscribe_secret", "unsubscribe-secret")  # real email needs one
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_registry_guards_a_single_network_provider() -> None:
    from return_notify.channels.registry import build_channel

    # given Twilio alone for SMS
    s = settings(sms_provider="twilio", twilio_account_sid="AC" + "0" * 32,
                 twilio_auth_token="token", twilio_from="+15005550006",
                 breaker_trip_after=4, breaker_cooldown_s=12.0)

    # when
    channel = build_channel("sms", s)

    # then it has a breaker of its own, with the configured thresholds
    assert isinstance(channel, BreakerChannel)
    assert channel.provider == "twilio" and channel.inner.provider == "twilio"
    assert (channel.breaker.trip_after, channel.breaker.cooldown_s) == (4, 12.0)
    assert channel.max_parallel == s.provider_concurrency
    channel.close()


def test_registry_guards_each_provider_of_a_failover_chain() -> None:
    from return_notify.channels.registry import build_channel

    channel = build_channel("email", settings(email_providers="sendgrid,smtp",
                                              sendgrid_api_key="SG.key", smtp_url="smtp://h:25"))
    assert isinstance(channel, FailoverChannel)
    assert [type(c) for c in channel.channels] == [BreakerChannel, BreakerChannel]
    breakers = [c.breaker for c in channel.channels if isinstance(c, BreakerChannel)]
    assert [b.provider for b in breakers] == ["sendgrid", "smtp"]
    assert breakers[0] is not breakers[1]
    channel.close()


def test_sandbox_inbox_and_a_zero_threshold_are_not_guarded() -> None:
    from return_notify.channels.registry import build_channel

    assert not isinstance(build_channel("sms", settings(sandbox_record=False)), BreakerChannel)
    assert not isinstance(build_channel("inapp", settings()), BreakerChannel)
    off = build_channel("email", settings(email_provider="smtp", smtp_url="smtp://h:25",
                                          breaker_trip_after=0))
    assert not isinstance(off, BreakerChannel) and off.provider == "smtp"


@pytest.mark.parametrize("env", [{"RSN_BREAKER_TRIP_AFTER": "-1"},
                                 {"RSN_BREAKER_COOLDOWN_S": "0"},
                                 {"RSN_BREAKER_COOLDOWN_S": "soon"}])
def test_bad_breaker_settings_are_refused_with_the_setting_named(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match="breaker_"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_five_failures_and_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSN_BREAKER_TRIP_AFTER", raising=False)
    monkeypatch.delenv("RSN_BREAKER_COOLDOWN_S", raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.breaker_trip_after, s.breaker_cooldown_s) == (5, 30.0)


def test_breaker_state_is_exported_in_a_worker_process(tmp_path: object) -> None:
    # a process set up like a pool process: metrics port set, multiprocess dir exported
    code = """
import os
from return_notify.observability.metrics import observe_breaker
observe_breaker("twilio", False)
observe_breaker("twilio", True)
observe_breaker("sendgrid", True)
observe_breaker("sendgrid", False)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
r = CollectorRegistry()
MultiProcessCollector(r, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
print(generate_latest(r).decode())
"""
    env = {**os.environ, "RSN_METRICS_PORT": "9999", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert 'rsn_provider_breaker_open{provider="twilio"} 1.0' in out
    assert 'rsn_provider_breaker_open{provider="sendgrid"} 0.0' in out
    assert 'rsn_provider_breaker_trips_total{provider="twilio"} 1.0' in out
    assert 'rsn_provider_breaker_trips_total{provider="sendgrid"} 1.0' in out


def test_the_concurrency_setting_reaches_the_guarded_providers_connections() -> None:
    # given providers that size a connection pool for the calls in flight
    sizes: dict[str, list[int]] = {"sendgrid": [], "smtp": []}

    class Pooled(Scripted):
        def resize_connections(self, size: int) -> None:
            sizes[self.provider].append(size)

    clock = Clock()
    chain = FailoverChannel([
        BreakerChannel(Pooled("sendgrid"), CircuitBreaker("sendgrid", clock=clock)),
        BreakerChannel(Pooled("smtp"), CircuitBreaker("smtp", clock=clock)),
    ])

    # when the registry sets the chain's parallelism
    chain.max_parallel = 12

    # then every provider behind its breaker sizes its pool for it
    assert sizes == {"sendgrid": [12], "smtp": [12]}
