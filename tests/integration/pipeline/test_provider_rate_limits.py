"""A provider's 429 is a wait, not a failure; the limiter learns from a storm of them; and
a batch is recorded while its sends are still going out (real SendGrid SDK against the
local SendGrid server, real PostgreSQL and Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from return_notify.channels.fakes.sendgrid_server import FAKE_API_KEY, SendGridFakeServer
from return_notify.channels.registry import build_channel
from return_notify.config.settings import Settings
from return_notify.pipeline.deliver import deliver_batch
from return_notify.pipeline.ingest import ingest_batch
from return_notify.pipeline.ratelimit import RateLimiter
from return_notify.storage.db import session_scope
from return_notify.storage.redis import redis_client
from tests.helpers import event, uid

pytestmark = pytest.mark.integration


@pytest.fixture
def sendgrid(svc: Any) -> Iterator[SendGridFakeServer]:
    with SendGridFakeServer() as sg:
        yield sg


def settings_for(sg: SendGridFakeServer, svc: Any, **extra: Any) -> Settings:
    values: dict[str, Any] = dict(
        email_provider="sendgrid", sendgrid_api_key=FAKE_API_KEY, sendgrid_base_url=sg.base_url,
        provider_timeout_s=3, max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02,
        rate_limited_wait_s=0.01, broker_url=svc.broker_url,
        redis_key_prefix=svc.redis_key_prefix, breaker_trip_after=0,
        unsubscribe_secret="rate-limit-test-secret")
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def email_ids(n: int, tenant: str, email: str = "ok@example.com") -> list[int]:
    evs = [event("refund_processed", tenant=tenant, email=email, phone=None) for _ in range(n)]
    with session_scope() as s:
        return list(ingest_batch(s, evs).deliveries["email"])


def row(did: int) -> Any:
    with session_scope() as s:
        return s.execute(text("SELECT state, attempts, last_error FROM deliveries WHERE id = :i"),
                         {"i": did}).one()


def limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(redis_client(settings), {}, settings.redis_key_prefix,
                       storm=settings.rate_limited_storm)


def test_a_provider_that_keeps_answering_429_never_spends_the_tries(
        svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: a provider that answers 429 to every call, and a budget of 2 tries
    settings = settings_for(sendgrid, svc)
    (did,) = email_ids(1, uid("t-"), email="ann+fail-429@example.com")
    # when: the delivery is tried six times (three times the try budget)
    for _ in range(6):
        deliver_batch(session_scope, "email", [did], build_channel("email", settings), settings)
        with session_scope() as s:  # due again at once (the 429 asked for a second or more)
            s.execute(text("UPDATE deliveries SET next_attempt_at = now() WHERE id = :i"),
                      {"i": did})
    # then: it waits, never dead, no try spent; every call is on record as rate_limited
    state, attempts, err = row(did)
    assert state == "retrying" and attempts == 0, (state, attempts, err)
    with session_scope() as s:
        outcomes = s.execute(text("SELECT outcome FROM delivery_attempts WHERE delivery_id = :i"),
                             {"i": did}).scalars().all()
    assert outcomes == ["rate_limited"] * 6


def test_rate_limited_past_the_time_budget_goes_dead(svc: Any, sendgrid: SendGridFakeServer) -> None:
    settings = settings_for(sendgrid, svc, rate_limited_max_s=3600)
    (did,) = email_ids(1, uid("t-"), email="ann+fail-429@example.com")
    with session_scope() as s:  # created two hours ago
        s.execute(text("UPDATE deliveries SET created_at = now() - interval '2 hours' "
                       "WHERE id = :i"), {"i": did})
    deliver_batch(session_scope, "email", [did], build_channel("email", settings), settings)
    state, _, err = row(did)
    assert state == "dead" and "rate limited by the provider for more than 3600s" in err


def test_a_storm_of_429s_pauses_the_provider_for_every_worker(
        svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: the provider answers 429 (asking for 30 s) to the next 5 calls
    settings = settings_for(sendgrid, svc, rate_limited_storm=5,
                            redis_key_prefix=svc.redis_key_prefix + uid("storm-") + ":")
    sendgrid.fail_next(5, "rate_limit", retry_after_s=30)
    first = email_ids(5, uid("t-"))
    lim = limiter(settings)
    deliver_batch(session_scope, "email", first, build_channel("email", settings), settings,
                  limiter=lim)
    calls = len(sendgrid.requests("/v3/mail/send"))
    assert calls == 5
    # when: another batch (any worker: the pause lives in Redis) is due
    second = email_ids(3, uid("t-"))
    outcome = deliver_batch(session_scope, "email", second, build_channel("email", settings),
                            settings, limiter=limiter(settings))
    # then: nobody calls the paused provider; the deliveries wait without spending a try
    assert len(sendgrid.requests("/v3/mail/send")) == calls
    assert outcome.throttled == 3
    assert all(row(d)[:2] == ("retrying", 0) for d in second)


def test_a_lone_429_delays_only_its_own_delivery(svc: Any, sendgrid: SendGridFakeServer) -> None:
    settings = settings_for(sendgrid, svc, rate_limited_storm=5,
                            redis_key_prefix=svc.redis_key_prefix + uid("lone-") + ":")
    sendgrid.fail_next(1, "rate_limit", retry_after_s=30)
    ids = email_ids(4, uid("t-"))
    lim = limiter(settings)
    deliver_batch(session_scope, "email", ids, build_channel("email", settings), settings,
                  limiter=lim)
    states = sorted(row(d)[0] for d in ids)
    assert states == ["retrying", "sent", "sent", "sent"]
    more = email_ids(2, uid("t-"))
    deliver_batch(session_scope, "email", more, build_channel("email", settings), settings,
                  limiter=lim)
    assert [row(d)[0] for d in more] == ["sent", "sent"]


def test_a_batch_is_recorded_while_its_sends_go_out(svc: Any, sendgrid: SendGridFakeServer) -> None:
    # given: 24 emails through a provider that answers after 150 ms, 4 calls at a time
    settings = settings_for(sendgrid, svc, provider_concurrency=4)
    sendgrid.set_latency(150)
    ids = email_ids(24, uid("t-"))
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with session_scope() as s:
                seen.append(int(s.execute(text(
                    "SELECT count(*) FROM deliveries WHERE id = ANY(:i) AND state = 'sent'"),
                    {"i": ids}).scalar_one()))
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        outcome = deliver_batch(session_scope, "email", ids, build_channel("email", settings),
                                settings)
    finally:
        done.set()
        t.join()
    # then: rows became 'sent' a few at a time, never more than 4 calls unrecorded at once
    assert outcome.states["sent"] == 24
    partial = [n for n in seen if 0 < n < 24]
    assert partial, seen
    assert outcome.write_backs >= 24 // 4
    # and each sent_at is the time its own call returned, not the batch's end
    with session_scope() as s:
        spread = s.execute(text("SELECT extract(epoch FROM max(sent_at) - min(sent_at)) "
                                "FROM deliveries WHERE id = ANY(:i)"), {"i": ids}).scalar_one()
    assert spread >= 0.3
