"""What a deliver batch decides for each claimed delivery that is not simply sent: how a
provider's error is classified, and how long a delivery waits when the global rate limiter,
a provider's own rate limit or a paused provider holds it back.

Waiting is never failing: a delivery held back by a rate limit (ours or the provider's
429) or a paused provider spends no try, so it never goes dead or to the dead-letter list
for it. A provider that keeps answering 429 is bounded by time instead
(``RSN_RATE_LIMITED_MAX_S`` from the delivery's creation). Short waits ride a Celery
countdown; longer ones stay in PostgreSQL for the sweeper.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from return_notify.channels.base import OutboundMessage
from return_notify.config.settings import Settings
from return_notify.core.backoff import backoff_s
from return_notify.errors import DeliveryError, PermanentError, RateLimitedError
from return_notify.pipeline.deliver_record import Row
from return_notify.pipeline.ratelimit import Limit, RateLimiter, spread_wait
from return_notify.storage.models import DEAD, FAILED, RETRYING

__all__ = ["DeliverOutcome", "classify", "throttle", "wait_for_provider"]


@dataclass
class DeliverOutcome:
    claimed: int = 0
    states: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: (delivery id, seconds from now) to re-enqueue with a short countdown
    retry_soon: list[tuple[int, float]] = field(default_factory=list)
    #: one dict per provider call (the attempt rows), for metrics
    attempts: list[dict[str, Any]] = field(default_factory=list)
    #: seconds from the event's occurred_at to sent, one per message sent in this batch
    sent_latencies_s: list[float] = field(default_factory=list)
    #: tenant slug per claimed delivery id, for per-tenant metrics
    tenants: dict[int, str] = field(default_factory=dict)
    #: deliveries held back by the global rate limiter, and their summed wait
    throttled: int = 0
    throttle_wait_s: float = 0.0
    #: one (bucket kind "tenant" or "provider", provider, wait s) per held-back delivery
    throttle_waits: list[tuple[str, str, float]] = field(default_factory=list)
    #: per claimed delivery: the producer's event id, and (state, reason) it moved to
    event_ids: dict[int, str | None] = field(default_factory=dict)
    results: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    #: deliveries waiting for a provider paused by its circuit breaker (no attempt spent)
    paused: int = 0
    #: deliveries a provider answered 429 (waiting, no attempt spent)
    provider_rate_limited: int = 0
    #: email deliveries created for undeliverable SMS, to enqueue after the commit
    fallback_email: list[int] = field(default_factory=list)
    #: write-backs the batch took (outcomes are recorded while sends go out)
    write_backs: int = 0


def throttle(
    limiter: RateLimiter, provider: str, candidates: list[Any], rows: dict[int, Row],
    now: datetime, settings: Settings, outcome: DeliverOutcome,
) -> list[Any]:
    """Keep what the tenant and provider buckets allow now; the rest waits (no attempt is
    spent) until tokens arrive: a short countdown, or the sweeper for longer waits."""
    allowed: list[Any] = []
    waiting: list[tuple[Any, float, str]] = []
    by_tenant: dict[str, list[Any]] = defaultdict(list)
    for c in candidates:
        by_tenant[c.slug].append(c)
    for slug, group in by_tenant.items():
        g = limiter.acquire(f"tenant:{slug}", len(group))
        allowed.extend(group[: g.granted])
        rate = (limiter.limit_for(f"tenant:{slug}") or Limit(1.0, 1.0)).rate_per_s
        waiting.extend((c, spread_wait(g.wait_s, i, rate), "tenant")
                       for i, c in enumerate(group[g.granted:]))
    if allowed:
        g = limiter.acquire(f"provider:{provider}", len(allowed))
        rate = (limiter.limit_for(f"provider:{provider}") or Limit(1.0, 1.0)).rate_per_s
        over = allowed[g.granted:]
        allowed = allowed[: g.granted]
        for c in over:
            limiter.give_back(f"tenant:{c.slug}", 1)
        waiting.extend((c, spread_wait(g.wait_s, i, rate), "provider") for i, c in enumerate(over))
    for c, wait, bucket in waiting:
        row = rows[c.id]
        row.state, row.next_at, row.throttled = RETRYING, now + timedelta(seconds=wait), True
        row.err = f"rate limited: waiting {wait:.2f}s for a token"
        outcome.throttled += 1
        outcome.throttle_wait_s += wait
        outcome.throttle_waits.append((bucket, provider, wait))
        if wait <= settings.max_countdown_s:
            outcome.retry_soon.append((c.id, wait))
    return allowed


def wait_for_provider(
    row: Row, wait_s: float, reason: str, at: datetime, settings: Settings,
    outcome: DeliverOutcome,
) -> None:
    """Park a delivery until its paused provider may be called again. Like a rate-limit
    wait it spends no attempt (never dead, never in the DLQ); a wait beyond
    ``max_countdown_s`` stays in PostgreSQL for the sweeper. Up to 10 % later, so that
    the parked deliveries do not all come back in the same instant."""
    wait = wait_s * random.uniform(1.0, 1.1)
    row.state, row.next_at, row.throttled = RETRYING, at + timedelta(seconds=wait), True
    row.err = f"waiting {wait:.1f}s: {reason}"[:2000]
    outcome.paused += 1
    if wait <= settings.max_countdown_s:
        outcome.retry_soon.append((row.id, wait))


def classify(
    row: Row, err: DeliveryError, attempt: dict[str, Any], message: OutboundMessage,
    settings: Settings, max_attempts: int, created_at: datetime | None, now: datetime,
    outcome: DeliverOutcome,
) -> float | None:
    """Record a provider error on ``row`` and its attempt; returns the wait a provider's
    429 asked for (for the rate limiter to learn from), else None."""
    attempt.update(
        error_class=type(err).__name__, error_code=err.code, error_message=str(err)[:2000],
        outcome="permanent" if isinstance(err, PermanentError)
        else "rate_limited" if isinstance(err, RateLimitedError) else "transient",
    )
    row.err = f"{type(err).__name__}: {err}"[:2000]
    if isinstance(err, PermanentError):
        row.state = FAILED
        return None
    if isinstance(err, RateLimitedError):
        # the provider asked us to slow down: wait as asked, spend no try; only a provider
        # that keeps throttling for RSN_RATE_LIMITED_MAX_S makes the delivery dead
        if created_at is not None and (now - created_at).total_seconds() > settings.rate_limited_max_s:
            row.state = DEAD
            row.err = (f"rate limited by the provider for more than "
                       f"{settings.rate_limited_max_s:.0f}s: {row.err}")[:2000]
            return None
        asked = err.retry_after_s
        wait = min(settings.backoff_max_s,
                   max(asked or 0.0, settings.rate_limited_wait_s) * random.uniform(1.0, 1.5))
        row.state, row.next_at, row.throttled = RETRYING, now + timedelta(seconds=wait), True
        outcome.provider_rate_limited += 1
        if wait <= settings.max_countdown_s:
            outcome.retry_soon.append((row.id, wait))
        return asked or settings.rate_limited_wait_s
    if message.attempt >= max_attempts:
        row.state = DEAD
        return None
    wait = backoff_s(message.attempt, settings.backoff_base_s, settings.backoff_max_s)
    row.state, row.next_at = RETRYING, now + timedelta(seconds=wait)
    if wait <= settings.max_countdown_s:
        outcome.retry_soon.append((row.id, wait))
    return None
