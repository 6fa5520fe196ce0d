"""The global rate limiter on real Redis, alone and through 1, 2 and 4 worker processes."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlalchemy import text

from return_notify.devtools.processes import start_worker
from return_notify.pipeline.ratelimit import Limit, RateLimiter, parse_limits
from return_notify.producer import publish_many
from return_notify.storage.db import session_scope
from tests.helpers import event, uid, wait_until

pytestmark = pytest.mark.integration


def test_bucket_grants_the_burst_then_refills_at_the_rate(svc: Any) -> None:
    r = redis.Redis.from_url(svc.broker_url)
    lim = RateLimiter(r, {"provider:x": Limit(rate_per_s=20, burst=5)}, svc.redis_key_prefix + uid())
    first = lim.acquire("provider:x", 8)
    assert first.granted == 5 and 0 < first.wait_s <= 0.06
    time.sleep(0.25)
    again = lim.acquire("provider:x", 10)
    assert 4 <= again.granted <= 6  # ~0.25 s × 20/s
    assert lim.acquire("provider:none", 1000).granted == 1000  # no limit configured


def test_tenant_wildcard_and_specific_limits(svc: Any) -> None:
    lim = RateLimiter(redis.Redis.from_url(svc.broker_url),
                      parse_limits("tenant:*=1/s:2, tenant:big=100/s"), svc.redis_key_prefix + uid())
    assert lim.acquire("tenant:small", 5).granted == 2
    assert lim.acquire("tenant:big", 50).granted == 50


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_aggregate_send_rate_never_exceeds_the_limit(
    svc: Any, tmp_path: Any, processes: int
) -> None:
    rate, burst, n = 40.0, 20, 420
    tenant = uid("rl-")
    env = svc.env(RSN_RATE_LIMITS=f"tenant:{tenant}={int(rate)}/s:{burst}", RSN_INAPP_PROVIDER="inbox",
                  RSN_DELIVER_BATCH_SIZE="20", RSN_INGEST_BATCH_SIZE="50")
    w = start_worker(env, concurrency=processes, logdir=str(tmp_path), loglevel="WARNING")
    try:
        publish_many([event("return_approved", tenant=tenant, email=None, phone=None)
                      for _ in range(n)], batch_size=50)

        def times() -> list[Any] | None:
            with session_scope() as s:
                rows = s.execute(text(
                    "SELECT i.created_at FROM inbox_items i JOIN tenants t ON t.id = i.tenant_id "
                    "WHERE t.slug = :t ORDER BY 1"), {"t": tenant}).scalars().all()
            return list(rows) if len(rows) >= n else None

        stamps = wait_until(times, timeout_s=90, what=f"{n} sends")
    finally:
        w.stop(20)
    # the bucket starts full: after the burst, sends may only come at the configured rate
    # measured over the middle 80 % of the steady part, so a slow start or end on a busy
    # machine does not distort it
    steady = stamps[burst:]
    lo, hi = len(steady) // 10, len(steady) * 9 // 10
    measured = (hi - lo) / (steady[hi] - steady[lo]).total_seconds()
    print(f"{processes} worker process(es): {measured:.1f}/s against a limit of {rate}/s")
    # never faster than the limit, whatever the number of processes (a correctness property);
    # and not starved: tokens are not wasted (a loose bound, the machine may be busy)
    assert measured <= rate * 1.10
    assert measured >= rate * 0.75
