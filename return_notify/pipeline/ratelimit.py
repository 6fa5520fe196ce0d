"""A global token-bucket rate limiter in Redis: one bucket per provider account or tenant.

Celery's ``rate_limit`` is per worker process; provider quotas are per account. Every
process takes tokens from the same Redis hash with one atomic Lua script that reads the
Redis server's clock (``TIME``), so workers on many hosts share one limit and one clock.
A caller asks for ``n`` tokens and gets up to ``n`` now, plus how long until the next one:
it never blocks or busy-waits.

The limiter also learns from providers: when a provider answers 429 to
``RSN_RATE_LIMITED_STORM`` calls in a row in one worker process, that is a limit, not a
blip, and the provider's bucket is paused for every worker for the wait it asked, whether
or not a limit is configured for it. A lone 429 (or a few among successes) only delays its
own delivery.

Limits are configured as ``RSN_RATE_LIMITS``, a comma-separated list of ``KEY=RATE``:
``provider:twilio=100/s, provider:sendgrid=10000/m, tenant:*=50/s, tenant:acme=200/s``.
``tenant:*`` applies to every tenant without its own entry. A bucket holds up to one
second of tokens (``burst``) unless ``RATE:BURST`` says otherwise (``100/s:20``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from return_notify.errors import ConfigurationError

_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = math.min(want, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
local wait = 0
if granted < want then wait = (1 - (tokens - math.floor(tokens))) / rate end
return {granted, tostring(wait)}
"""

_PAUSE = """
local want = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < want then
  redis.call('SET', KEYS[1], '1', 'PX', want)
end
return 1
"""

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_SPEC = re.compile(r"^\s*(?P<n>\d+(\.\d+)?)\s*/\s*(?P<u>[smh])\s*(:\s*(?P<burst>\d+(\.\d+)?))?\s*$", re.ASCII)


@dataclass(frozen=True)
class Limit:
    rate_per_s: float
    burst: float


def parse_limits(spec: str) -> dict[str, Limit]:
    """Parse ``RSN_RATE_LIMITS``; raises ``ConfigurationError`` naming the bad entry."""
    out: dict[str, Limit] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        m = _SPEC.fullmatch(value)
        if not key.strip() or not m or not key.strip().startswith(("provider:", "tenant:")):
            raise ConfigurationError(
                f"RSN_RATE_LIMITS entry {part!r}: use provider:NAME=RATE or tenant:SLUG=RATE, "
                "with RATE like 100/s, 10000/m or 100/s:20 (burst)"
            )
        rate = float(m["n"]) / _UNITS[m["u"]]
        burst = float(m["burst"]) if m["burst"] else max(1.0, rate)
        out[key.strip()] = Limit(rate, burst)
    return out


def parse_rate(spec: str, name: str = "rate") -> Limit:
    """One ``RATE[:BURST]`` (``30/m:10``); raises ``ConfigurationError`` naming ``name``."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise ConfigurationError(f"{name}={spec!r}: use RATE like 100/s, 30/m or 10/h:3 (burst)")
    rate = float(m["n"]) / _UNITS[m["u"]]
    if rate <= 0:
        raise ConfigurationError(f"{name}={spec!r}: the rate must be positive")
    return Limit(rate, float(m["burst"]) if m["burst"] else max(1.0, rate))


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_s: float  # until the next token, when fewer than asked were granted


class RateLimiter:
    """Takes tokens from Redis buckets named ``{prefix}ratelimit:{key}``."""

    def __init__(self, redis_client: Any, limits: dict[str, Limit], prefix: str = "",
                 storm: int = 5) -> None:
        self._redis = redis_client
        self._limits = limits
        self._prefix = prefix
        self._storm = storm
        self._script = redis_client.register_script(_LUA)
        self._pause_script = redis_client.register_script(_PAUSE)
        self._streaks: dict[str, int] = {}

    def limit_for(self, key: str) -> Limit | None:
        if key in self._limits:
            return self._limits[key]
        kind = key.split(":", 1)[0]
        return self._limits.get(f"{kind}:*")

    def acquire(self, key: str, n: int) -> Grant:
        """Take up to ``n`` tokens from ``key``'s bucket (all of them when it has no limit),
        none while a provider's 429s paused it."""
        if n > 0 and key.startswith("provider:"):
            paused_ms = int(self._redis.pttl(f"{self._prefix}ratelimit:paused:{key}"))
            if paused_ms > 0:
                return Grant(0, paused_ms / 1000.0)
        limit = self.limit_for(key)
        if limit is None or n <= 0:
            return Grant(n, 0.0)
        granted, wait = self._script(keys=[f"{self._prefix}ratelimit:{key}"],
                                     args=[limit.rate_per_s, limit.burst, n])
        return Grant(int(granted), max(0.0, float(wait)))

    def provider_said_slow_down(self, provider: str, wait_s: float) -> bool:
        """A 429 from ``provider`` that asked for ``wait_s``; True when it completed a run of
        ``storm`` in a row and the provider is now paused for every worker. Never raises (a
        Redis problem only means nothing is learned)."""
        streak = self._streaks.get(provider, 0) + 1
        self._streaks[provider] = streak
        if streak < self._storm:
            return False
        self._streaks[provider] = 0
        try:
            self._pause_script(keys=[f"{self._prefix}ratelimit:paused:provider:{provider}"],
                               args=[max(1, int(wait_s * 1000))])
        except Exception:  # noqa: BLE001 - learning is best effort
            return False
        return True

    def provider_answered(self, provider: str) -> None:
        """A call to ``provider`` went through: a run of 429s is broken."""
        if self._streaks.get(provider):
            self._streaks[provider] = 0

    def give_back(self, key: str, n: int) -> None:
        """Return unused tokens (taken from a provider bucket, then refused by a tenant's)."""
        limit = self.limit_for(key)
        if limit is None or n <= 0:
            return
        name = f"{self._prefix}ratelimit:{key}"
        self._redis.hincrbyfloat(name, "tokens", float(n))


def spread_wait(base_wait_s: float, position: int, rate_per_s: float) -> float:
    """When the ``position``-th waiting message may go: tokens arrive at ``rate_per_s``."""
    return base_wait_s + math.floor(position) / max(rate_per_s, 1e-9)


_cache: dict[tuple[int, str, str, str], RateLimiter | None] = {}


def get_limiter(settings: Any) -> RateLimiter | None:
    """The process's limiter for ``settings`` (None without a broker URL). With no limits
    configured it still learns from providers' 429s (a paused provider is one Redis read
    per batch)."""
    import os

    key = (os.getpid(), settings.rate_limits, settings.broker_url or "", settings.redis_key_prefix)
    if key not in _cache:
        limits = parse_limits(settings.rate_limits)
        if not settings.broker_url:
            _cache[key] = None
        else:
            from return_notify.storage.redis import redis_client

            client = redis_client(settings, timeout_s=5.0)
            _cache[key] = RateLimiter(client, limits, settings.redis_key_prefix,
                                      storm=settings.rate_limited_storm)
    return _cache[key]
