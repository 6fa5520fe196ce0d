"""Backoff, Celery configuration invariants, masking, sample data and the sandbox rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from return_notify.channels.base import OutboundMessage
from return_notify.channels.sandbox import SandboxChannel
from return_notify.config.celery import celery_config
from return_notify.config.settings import Settings
from return_notify.core.backoff import backoff_s
from return_notify.core.masking import mask
from return_notify.devtools.sample_data import make_stream, stamp
from return_notify.errors import PermanentError, TransientError


@given(attempt=st.integers(1, 40), base=st.floats(0.01, 10), cap=st.floats(1, 3600),
       retry_after=st.none() | st.floats(0, 10_000))
def test_backoff_is_capped_jittered_and_honours_retry_after(
    attempt: int, base: float, cap: float, retry_after: float | None
) -> None:
    wait = backoff_s(attempt, base, cap, retry_after, rng=random.Random(attempt))
    assert 0 <= wait <= cap
    if retry_after is not None:
        assert wait >= min(retry_after, cap)


def test_backoff_grows_exponentially_on_average() -> None:
    rng = random.Random(1)
    means = [sum(backoff_s(a, 1, 10_000, rng=rng) for _ in range(400)) / 400 for a in (1, 4, 7)]
    assert means[0] < means[1] < means[2]
    assert 20 < means[2] < 44  # full jitter: mean is half of 2^(7-1)


def test_celery_config_is_json_only_acks_late_and_guards_the_visibility_timeout() -> None:
    conf = celery_config(Settings(broker_url="redis://x"))
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert {q.name for q in conf["task_queues"]} >= {"events", "email", "sms", "inapp"}
    with pytest.raises(ValueError, match="VISIBILITY_TIMEOUT"):
        celery_config(Settings(broker_url="redis://x", visibility_timeout_s=60))


def test_settings_come_from_rsn_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSN_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("RSN_SENDGRID_API_KEY", "SG.secret")
    s = Settings()
    assert s.max_attempts == 9
    assert "SG.secret" not in repr(s)


@pytest.mark.parametrize(("raw", "masked"), [
    ("jane@example.com", "j***@example.com"), ("+14155554567", "+1******4567"), (None, ""),
])
def test_mask(raw: str | None, masked: str) -> None:
    assert mask(raw) == masked


def test_sample_stream_meets_the_demo_brief() -> None:
    s = make_stream()
    valid = [e for e in s.events if not e["event_id"].split("-", 1)[-1].startswith("bad")]
    assert len(s.events) >= 2000 and s.returns >= 500
    assert s.duplicates > 0 and s.out_of_order > 0 and s.invalid > 0
    assert {e["milestone"] for e in valid} >= {
        "return_initiated", "return_approved", "label_created", "shipment_dispatched",
        "in_transit", "warehouse_received", "inspection_completed", "restocked",
        "refund_processed", "return_completed", "return_rejected", "return_cancelled",
        "exception"}
    assert len({e["tenant"] for e in s.events}) >= 3
    assert len({e["customer"].get("locale") for e in s.events}) >= 3
    stamped = stamp(s.events)
    assert all("occurred_at" in e for e in stamped)


def _msg(rcpt: str, attempt: int = 1) -> OutboundMessage:
    return OutboundMessage(delivery_id=1, channel="email", recipient=rcpt, text="t", attempt=attempt)


def test_sandbox_magic_recipients() -> None:
    ch = SandboxChannel("email")
    assert ch.send(_msg("a@example.com")).provider == "sandbox"
    with pytest.raises(PermanentError):
        ch.send(_msg("fail-permanent@example.com"))
    with pytest.raises(TransientError):
        ch.send(_msg("fail-transient-2@example.com", attempt=2))
    assert ch.send(_msg("fail-transient-2@example.com", attempt=3)).provider_message_id


def test_sandbox_failure_rates_are_applied() -> None:
    ch = SandboxChannel("sms", transient_failure_rate=0.5, rng=random.Random(4))
    results = ch.send_many([_msg("+14155550000") for _ in range(400)])
    failures = sum(isinstance(r, TransientError) for r in results)
    assert 150 < failures < 250


# ------------------------------------------------------------- worker pool profiles ------

def test_delivery_profile_sets_processes_and_provider_calls_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    from return_notify.cli.main import _apply_profile
    from return_notify.config.settings import get_settings

    monkeypatch.delenv("RSN_PROVIDER_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    try:
        assert _apply_profile("delivery", None) == 12
        assert os.environ["RSN_PROVIDER_CONCURRENCY"] == "64"
        assert get_settings().provider_concurrency == 64  # the cached settings were re-read
        assert _apply_profile("ingest", None) == 3
        assert _apply_profile("delivery", 5) == 5  # -c wins
    finally:
        monkeypatch.delenv("RSN_PROVIDER_CONCURRENCY", raising=False)
        from return_notify.config.settings import reset_settings

        reset_settings()


def test_a_set_provider_concurrency_wins_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from return_notify.cli.main import _apply_profile

    monkeypatch.setenv("RSN_PROVIDER_CONCURRENCY", "12")
    _apply_profile("delivery", None)
    assert os.environ["RSN_PROVIDER_CONCURRENCY"] == "12"


def test_an_unknown_profile_is_refused_with_the_known_ones() -> None:
    import typer

    from return_notify.cli.main import _apply_profile

    with pytest.raises(typer.Exit):
        _apply_profile("turbo", None)
