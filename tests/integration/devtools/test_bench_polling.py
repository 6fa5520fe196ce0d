"""The benchmarks count in PostgreSQL only once the broker is idle (``broker_busy``): a
message waiting in any pipeline queue, at any priority, or an unacknowledged one, is work."""

from __future__ import annotations

from typing import Any

import pytest
import redis

pytestmark = pytest.mark.integration


def test_any_queued_or_unacknowledged_message_keeps_the_broker_busy(svc: Any) -> None:
    from return_notify.devtools.bench_paced import broker_busy

    prefix = svc.redis_key_prefix + "poll:"
    r = redis.Redis.from_url(svc.broker_url)
    try:
        assert broker_busy(prefix) is False
        for key in ("events", "email\x06\x169", "sms\x06\x163", "inapp"):
            r.rpush(prefix + key, b"{}")
            assert broker_busy(prefix) is True, key
            r.delete(prefix + key)
            assert broker_busy(prefix) is False, key
        r.hset(prefix + "unacked", "tag", b"{}")  # taken by a worker, not yet acknowledged
        assert broker_busy(prefix) is True
        # another run's messages (another prefix) are not this run's work
        assert broker_busy(prefix + "other:") is False
    finally:
        r.delete(*[k for k in r.scan_iter(match=prefix + "*")] or [prefix + "none"])
        r.close()
