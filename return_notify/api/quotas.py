"""Per-principal and per-tenant quotas of the costly admin routes (429 with Retry-After).

Template previews, validations, saves and rollbacks (``RSN_API_RENDER_RATE``), test sends
(``RSN_API_TEST_SEND_RATE`` per principal, ``RSN_API_TEST_SEND_TENANT_RATE`` per tenant)
and test recipient verification codes (``RSN_API_VERIFICATION_RATE`` per tenant) take a
token from a bucket in Redis (``pipeline.ratelimit``: one bucket for every API process).
When Redis cannot be reached the same bucket is kept in this process instead, so the
limits still hold (per process) and the API keeps answering.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

import redis
from fastapi import HTTPException, status

from return_notify.config.settings import get_settings
from return_notify.pipeline.ratelimit import Limit, RateLimiter, parse_rate

__all__ = ["RENDER", "TEST_SEND", "TEST_SEND_TENANT", "VERIFICATION", "take"]

log = logging.getLogger(__name__)

RENDER, TEST_SEND, TEST_SEND_TENANT, VERIFICATION = (
    "render", "test_send", "test_send_tenant", "verification")
_SETTING = {RENDER: "api_render_rate", TEST_SEND: "api_test_send_rate",
            TEST_SEND_TENANT: "api_test_send_tenant_rate", VERIFICATION: "api_verification_rate"}
_WHAT = {RENDER: "template previews and checks", TEST_SEND: "test sends",
         TEST_SEND_TENANT: "test sends of this tenant",
         VERIFICATION: "verification codes of this tenant"}

_lock = threading.Lock()
_limiters: dict[tuple[Any, ...], RateLimiter] = {}
_local: dict[str, tuple[float, float]] = {}  # key -> (tokens, at), when Redis is unreachable


def _limit(kind: str) -> Limit:
    name = _SETTING[kind]
    return parse_rate(getattr(get_settings(), name), "RSN_" + name.upper())


def _limiter(kind: str, limit: Limit) -> RateLimiter:
    s = get_settings()
    key = (kind, limit, s.broker_url, s.redis_key_prefix)
    with _lock:
        found = _limiters.get(key)
        if found is None:
            from return_notify.storage.redis import redis_client

            found = _limiters[key] = RateLimiter(redis_client(s, timeout_s=1.0), {f"{kind}:*": limit},
                                                 s.redis_key_prefix + "api:")
        return found


def _take_local(key: str, limit: Limit) -> float:
    """A token from this process's bucket: 0, or the seconds until the next one."""
    now = time.monotonic()
    with _lock:
        tokens, at = _local.get(key, (limit.burst, now))
        tokens = min(limit.burst, tokens + (now - at) * limit.rate_per_s)
        if tokens >= 1:
            _local[key] = (tokens - 1, now)
            return 0.0
        _local[key] = (tokens, now)
        return (1 - tokens) / limit.rate_per_s


def take(kind: str, who: str | int | None) -> None:
    """One token of ``kind`` for ``who`` (a principal or tenant id); 429 when none is left."""
    limit = _limit(kind)
    key = f"{kind}:{who}"
    wait = 0.0
    try:
        if get_settings().broker_url:
            grant = _limiter(kind, limit).acquire(key, 1)
            wait = grant.wait_s if grant.granted < 1 else 0.0
        else:
            wait = _take_local(key, limit)
    except redis.RedisError as exc:
        log.warning("quota %s: Redis unreachable (%s); counting in this process",
                    kind, type(exc).__name__)
        wait = _take_local(key, limit)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(retry)},
                            detail=f"too many {_WHAT[kind]}: retry in {retry} s")
