"""Deliver a batch of deliveries of one channel: claim, render, send, record.

The claim is a state check in PostgreSQL (``FOR UPDATE SKIP LOCKED`` + state filter), so
a message delivered twice by Redis, or enqueued twice by the sweeper, sends once.
Every provider call writes one ``delivery_attempts`` row; results are written back fenced
by the claim token, so a late writer can never overwrite a newer claim's outcome.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from return_notify.channels.base import Channel, OutboundMessage, SendResult
from return_notify.channels.breaker import TRIAL_WAIT_S, ProviderPausedError, paused_s
from return_notify.config.settings import Settings
from return_notify.core.backoff import backoff_s
from return_notify.errors import DeliveryError, PermanentError, RateLimitedError
from return_notify.pipeline import presend as policy
from return_notify.pipeline.ratelimit import Limit, RateLimiter, spread_wait
from return_notify.policy.planner import quiet_hours_holds
from return_notify.policy.throttle import QUIET_HOURS, is_stale
from return_notify.storage.models import (
    DEAD,
    FAILED,
    RETRYING,
    SCHEDULED,
    SENT,
    SKIPPED,
    SUPPRESSED,
    WAITING,
    DeliveryAttempt,
)
from return_notify.templating.context import build_context
from return_notify.templating.render import TemplateRenderError, render
from return_notify.templating.store import load_tenant_templates

_ATTEMPTS: Table = DeliveryAttempt.__table__  # type: ignore[assignment]
log = logging.getLogger(__name__)

_CLAIM = text("""
WITH c AS (
    SELECT d.id, d.state AS prev_state
    FROM deliveries d
    WHERE d.id = ANY(CAST(:ids AS bigint[]))
      AND d.channel = :channel
      AND (d.state = 'pending'
           OR (d.state IN ('retrying', 'scheduled')
               AND (d.next_attempt_at IS NULL
                    OR d.next_attempt_at <= now() + interval '500 milliseconds'))
           OR (d.state = 'sending' AND d.lease_until < now()))
    ORDER BY d.id
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE deliveries d
SET state = 'sending', claim_token = :token, attempts = d.attempts + 1,
    lease_until = now() + make_interval(secs => :lease), updated_at = now()
FROM c, events e, returns r, tenants t
WHERE d.id = c.id AND e.id = d.event_pk AND r.id = d.return_pk AND t.id = d.tenant_id
RETURNING d.id, c.prev_state, d.milestone, d.recipient, d.locale, d.attempts, d.replays,
          d.occurred_at, d.tenant_id, e.payload, r.milestone AS current_milestone, t.slug,
          t.name, r.region, r.milestone_at AS current_at, d.template
""")

_WRITE_BACK = text("""
UPDATE deliveries d
SET state = CASE WHEN v.state = 'sent' AND d.state IN ('delivered', 'failed') THEN d.state
                 ELSE v.state END,  -- a provider webhook got there first: keep its news
    next_attempt_at = v.next_at, provider = v.provider,
    attempts = d.attempts - CASE WHEN v.throttled THEN 1 ELSE 0 END,
    provider_message_id = COALESCE(v.pmid, d.provider_message_id),
    subject = COALESCE(v.subject, d.subject), body = COALESCE(v.body, d.body),
    last_error = v.err, skip_reason = v.skip,
    sent_at = CASE WHEN v.state = 'sent' THEN now() ELSE d.sent_at END,
    lease_until = NULL, claim_token = NULL, updated_at = now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]), CAST(:next_ats AS timestamptz[]),
            CAST(:providers AS text[]), CAST(:pmids AS text[]), CAST(:subjects AS text[]),
            CAST(:bodies AS text[]), CAST(:errs AS text[]), CAST(:skips AS text[]),
            CAST(:throttled AS boolean[]))
     AS v(id, state, next_at, provider, pmid, subject, body, err, skip, throttled)
WHERE d.id = v.id AND d.claim_token = :token
""")


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
    #: email deliveries created for undeliverable SMS, to enqueue after the commit
    fallback_email: list[int] = field(default_factory=list)


@dataclass
class _Row:
    id: int
    state: str = ""
    next_at: datetime | None = None
    provider: str | None = None
    pmid: str | None = None
    subject: str | None = None
    body: str | None = None
    err: str | None = None
    skip: str | None = None
    throttled: bool = False


def claim(session: Session, channel: str, ids: list[int], lease_s: float) -> tuple[str, list[Any]]:
    token = str(uuid.uuid4())
    rows = session.execute(
        _CLAIM, {"ids": ids, "channel": channel, "token": token, "lease": lease_s}
    ).all()
    return token, list(rows)


def deliver_batch(
    session_factory: Any,
    channel_name: str,
    ids: list[int],
    channel: Channel,
    settings: Settings,
    limiter: RateLimiter | None = None,
) -> DeliverOutcome:
    """Claim (one transaction), send (no transaction open), record (one transaction)."""
    outcome = DeliverOutcome()
    claimed_at = time.monotonic()  # the lease runs from (just after) here
    with session_factory() as session:
        token, claimed = claim(session, channel_name, sorted(set(ids)), settings.lease_s)
        blocked = policy.suppressed(session, channel_name, claimed, settings)
        # each tenant's branding and template overrides (one indexed query, cached)
        templates = load_tenant_templates(session, [c.tenant_id for c in claimed])
        held = quiet_hours_holds(session, channel_name, claimed)
    outcome.claimed = len(claimed)
    fallback: list[int] = []
    opted_out: list[tuple[int, str]] = []
    if not claimed:
        return outcome

    now = datetime.now(UTC)
    rows: dict[int, _Row] = {}
    to_send: list[OutboundMessage] = []
    attempts_meta: dict[int, int] = {}
    occurred: dict[int, datetime] = {}
    tenant_ids: dict[int, int] = {}
    budget: dict[int, int] = {}
    candidates: list[Any] = []
    for c in claimed:
        row = _Row(c.id)
        rows[c.id] = row
        occurred[c.id] = c.occurred_at
        outcome.tenants[c.id] = c.slug
        outcome.event_ids[c.id] = (c.payload or {}).get("event_id")
        tenant_ids[c.id] = c.tenant_id
        attempts_meta[c.id] = c.attempts
        budget[c.id] = settings.max_attempts * (1 + (c.replays or 0))
        if c.prev_state in WAITING and is_stale(
            c.milestone, c.occurred_at, c.current_milestone, c.current_at
        ):
            row.state, row.skip = SKIPPED, "superseded"
            continue
        if c.id in blocked:  # checked before every send; never spends an attempt
            row.state, row.skip, row.throttled = SUPPRESSED, blocked[c.id][:64], True
            if channel_name == "sms":
                fallback.append(c.id)
            continue
        if c.id in held:  # a retry or a backlog reaching quiet hours: wait, spend nothing
            row.state, row.next_at, row.skip, row.throttled = SCHEDULED, held[c.id], QUIET_HOURS, True
            continue
        candidates.append(c)

    pause_s = paused_s(channel) if candidates else 0.0
    if pause_s > 0:  # every provider is paused by its circuit breaker: call none, spend nothing
        for c in candidates:
            _wait_for_provider(rows[c.id], pause_s, f"{channel.provider} paused by its circuit "
                               "breaker", now, settings, outcome)
        candidates = []

    if limiter is not None and candidates:
        candidates = _throttle(limiter, channel.provider, candidates, rows, now, settings, outcome)

    for c in candidates:
        row = rows[c.id]
        try:
            unsub = policy.unsubscribe_token(c.slug, c.recipient) if channel_name == "email" else None
            ctx = build_context(c.payload, c.slug, c.name, settings.public_base_url,
                                unsubscribe_url=_unsubscribe_url(settings, unsub))
            # the event's region/category and the rule's variant pick the override
            # (template_scope: locale, then variant, then scope specificity)
            tt = templates[c.tenant_id]
            rendered = render(channel_name, c.milestone, tt.enrich(ctx), locale=c.locale,
                              **tt.options(c.payload.get("region"),
                                           c.payload.get("product_category"), c.template),
                              sms_unicode=settings.sms_unicode)
        except TemplateRenderError as exc:
            row.state, row.err = FAILED, f"TemplateRenderError: {exc}"
            continue
        row.subject, row.body = rendered.subject, rendered.text
        to_send.append(OutboundMessage(
            delivery_id=c.id, channel=channel_name, recipient=c.recipient or "",
            text=rendered.text, subject=rendered.subject, html=rendered.html,
            attempt=c.attempts, tenant=c.slug, metadata=_metadata(c, ctx, unsub),
        ))

    started = datetime.now(UTC)
    timed = channel.send_many_timed(to_send)  # each provider call timed on its own
    done_at = datetime.now(UTC)
    attempt_rows: list[dict[str, Any]] = []
    for message, (res, call_ms) in zip(to_send, timed, strict=True):
        row = rows[message.delivery_id]
        if isinstance(res, ProviderPausedError):  # not called (circuit breaker): no attempt
            _wait_for_provider(row, res.retry_after_s or TRIAL_WAIT_S, str(res), done_at,
                               settings, outcome)
            continue
        # with failover, the provider that actually answered, not the chain's name
        provider = res.provider or channel.provider
        row.provider = provider
        attempt: dict[str, Any] = {
            "delivery_id": message.delivery_id, "attempt_no": message.attempt,
            "started_at": started, "duration_ms": call_ms, "provider": provider,
            "provider_message_id": None, "error_class": None, "error_code": None,
            "error_message": None,
        }
        if isinstance(res, SendResult):
            row.state, row.pmid, row.provider = SENT, res.provider_message_id, res.provider
            attempt.update(outcome="sent", provider_message_id=res.provider_message_id)
            outcome.sent_latencies_s.append((done_at - occurred[row.id]).total_seconds())
        else:
            _classify(row, res, attempt, message, settings, budget[row.id], now, outcome)
            if (channel_name == "sms" and isinstance(res, PermanentError)
                    and str(res.code) in policy.SMS_UNDELIVERABLE):
                fallback.append(row.id)
                if str(res.code) in policy.SMS_OPTED_OUT:
                    opted_out.append((tenant_ids[row.id], message.recipient))
        attempt_rows.append(attempt)
    for row in rows.values():
        if row.state == FAILED and row.err and row.err.startswith("TemplateRenderError"):
            attempt_rows.append({
                "delivery_id": row.id, "attempt_no": attempts_meta[row.id], "started_at": started,
                "duration_ms": 0.0, "outcome": "permanent", "provider": None,
                "provider_message_id": None, "error_class": "TemplateRenderError",
                "error_code": None, "error_message": row.err[:2000],
            })
        outcome.states[row.state] += 1
        outcome.results[row.id] = (row.state, row.skip or row.err)

    outcome.attempts = attempt_rows
    vals = list(rows.values())
    params = {
        "token": token,
        "ids": [r.id for r in vals], "states": [r.state for r in vals],
        "next_ats": [r.next_at for r in vals], "providers": [r.provider for r in vals],
        "pmids": [r.pmid for r in vals], "subjects": [r.subject for r in vals],
        "bodies": [r.body for r in vals], "errs": [r.err for r in vals],
        "skips": [r.skip for r in vals], "throttled": [r.throttled for r in vals],
    }
    # The provider calls happened: their outcome must survive a database blip, or the rows
    # stay 'sending' and go out again when the lease ends. Until then no one else may
    # claim them, so retrying the write-back here cannot race a resend.
    deadline = claimed_at + min(settings.lease_s, settings.task_soft_time_limit_s) - 1.0
    delay_s = 0.2
    while True:
        try:
            with session_factory() as session:
                if attempt_rows:
                    # Core executemany: the ORM's bulk path costs more CPU than the rows
                    session.execute(insert(_ATTEMPTS), attempt_rows)
                session.execute(_WRITE_BACK, params)
                for tid, rcpt in opted_out:
                    policy.record_opt_out(session, tid, rcpt, settings)
                outcome.fallback_email = policy.fall_back_to_email(session, fallback, settings)
            return outcome
        except OperationalError:
            if time.monotonic() + delay_s >= deadline:
                raise
            log.warning("recording %d delivery outcomes failed (database unreachable); "
                        "retrying in %.1fs", len(vals), delay_s)
            time.sleep(delay_s)
            delay_s = min(2.0, delay_s * 2)


def _unsubscribe_url(settings: Settings, token: str | None) -> str | None:
    if token is None:
        return None
    return f"{settings.public_base_url.rstrip('/')}/v1/unsubscribe/{token}"


def _metadata(c: Any, ctx: dict[str, Any], unsub: str | None) -> dict[str, Any]:
    """Ids and links only (never PII): what providers and the inbox need."""
    meta: dict[str, Any] = {"delivery_id": c.id, "milestone": c.milestone,
                            "return_id": ctx["return_id"], "cta_url": ctx["cta_url"]}
    if unsub:
        meta["unsubscribe_token"] = unsub
    return meta


def _throttle(
    limiter: RateLimiter, provider: str, candidates: list[Any], rows: dict[int, _Row],
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


def _wait_for_provider(
    row: _Row, wait_s: float, reason: str, at: datetime, settings: Settings,
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


def _classify(
    row: _Row, err: DeliveryError, attempt: dict[str, Any], message: OutboundMessage,
    settings: Settings, max_attempts: int, now: datetime, outcome: DeliverOutcome,
) -> None:
    attempt.update(
        error_class=type(err).__name__, error_code=err.code, error_message=str(err)[:2000],
        outcome="permanent" if isinstance(err, PermanentError)
        else "rate_limited" if isinstance(err, RateLimitedError) else "transient",
    )
    row.err = f"{type(err).__name__}: {err}"[:2000]
    if isinstance(err, PermanentError):
        row.state = FAILED
        return
    if message.attempt >= max_attempts:
        row.state = DEAD
        return
    retry_after = err.retry_after_s if isinstance(err, RateLimitedError) else None
    wait = backoff_s(message.attempt, settings.backoff_base_s, settings.backoff_max_s, retry_after)
    row.state, row.next_at = RETRYING, now + timedelta(seconds=wait)
    if wait <= settings.max_countdown_s:
        outcome.retry_soon.append((row.id, wait))
