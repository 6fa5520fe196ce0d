"""Deliver a batch of deliveries of one channel (``deliver_batch``: a deliver task), or of
several channels at once (``deliver_channels``: an event's notifications, delivered inline
by its ingest task with one claim and one recorder): claim, render, send, record.

The claim is a state check in PostgreSQL (``FOR UPDATE SKIP LOCKED`` + state filter), so
a message delivered twice by Redis, or enqueued twice by the sweeper, sends once. Every
provider call writes one ``delivery_attempts`` row; results are written back fenced by the
claim token, so a late writer can never overwrite a newer claim's outcome.

Sends go out transactional first (then informational, each in id order) and are recorded
while the batch is still sending (``deliver_record.Recorder``): no call starts while the
provider's window (``RSN_PROVIDER_CONCURRENCY`` calls, or one batch-API chunk) is full of
calls in flight or answered but not yet recorded, so a worker killed at any instant repeats
at most that window when the lease ends. Each sent row carries the time its call returned.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import OperationalError

from return_notify.channels.base import RECORD_NOW, Channel, OutboundMessage, SendResult
from return_notify.channels.breaker import TRIAL_WAIT_S, ProviderPausedError, paused_s
from return_notify.config.settings import Settings
from return_notify.errors import PermanentError, RateLimitedError
from return_notify.pipeline import presend
from return_notify.pipeline.deliver_outcomes import (
    DeliverOutcome,
    classify,
    throttle,
    wait_for_provider,
)
from return_notify.pipeline.deliver_record import Recorder, Row, apply_parked_outcomes, claim
from return_notify.pipeline.ratelimit import RateLimiter
from return_notify.policy.planner import quiet_hours_holds
from return_notify.policy.throttle import QUIET_HOURS, is_stale
from return_notify.storage.models import (
    FAILED,
    RETRYING,
    SCHEDULED,
    SENT,
    SKIPPED,
    SUPPRESSED,
    WAITING,
)
from return_notify.templating.context import build_context
from return_notify.templating.render import TemplateRenderError, render
from return_notify.templating.store import load_tenant_templates

__all__ = ["DeliverOutcome", "claim", "deliver_batch", "deliver_channels"]

#: at most this long between two write-backs while answers keep coming
_RECORD_EVERY_S = 0.1
#: deliveries a batch had no time left for are claimed again this soon, by a new task
_HAND_BACK_S = 0.05


def deliver_batch(
    session_factory: Any,
    channel_name: str,
    ids: list[int],
    channel: Channel,
    settings: Settings,
    limiter: RateLimiter | None = None,
    started_at: float | None = None,
) -> DeliverOutcome:
    """Claim (one transaction), send (no transaction open), record (small transactions)."""
    return deliver_channels(session_factory, {channel_name: (ids, channel)}, settings,
                            limiter=limiter, started_at=started_at)[channel_name]


def deliver_channels(
    session_factory: Any,
    batches: dict[str, tuple[list[int], Channel]],
    settings: Settings,
    limiter: RateLimiter | None = None,
    on_error: Any = None,
    started_at: float | None = None,
) -> dict[str, DeliverOutcome]:
    """``deliver_batch`` for several channels at once (an event's email, SMS and in-app
    notifications, delivered inline by its ingest task): one claim, in one transaction, for
    all of them (the claim token is shared; each channel's write-backs are fenced by it as
    usual), then each channel's sends and records in turn.

    ``on_error(channel, exc)``, when given, is called when one channel's sends fail after
    the claim; when it returns True the other channels still go out (that channel's claimed
    rows are held by their lease), else, as without it, the error propagates. A database
    outage always propagates.

    ``started_at`` (``time.monotonic()``): when the calling task started, if before the
    claim (an ingest task delivering inline). The batch's time budget ends a second before
    the task's soft time limit or the claim's lease, whichever comes first; no provider call
    starts within ``RSN_PROVIDER_TIMEOUT_S`` of that end, so every call made is answered and
    recorded in time. What is left goes back to the queue without spending an attempt."""
    outcomes = {name: DeliverOutcome() for name in batches}
    # outcomes parked in Redis while the database was away go in before any claim
    apply_parked_outcomes(session_factory, settings)
    claimed_at = time.monotonic()  # the lease runs from (just after) here
    wanted = sorted({i for ids, _ in batches.values() for i in ids})
    with session_factory() as session:
        token, rows = claim(session, list(batches), wanted, settings.lease_s)
        by_channel: dict[str, list[Any]] = {name: [] for name in batches}
        for c in rows:
            by_channel[c.channel].append(c)
        blocked = presend.suppressed_channels(session, by_channel, settings)
        # each tenant's branding and template overrides (one indexed query, cached)
        templates = load_tenant_templates(
            session, [c.tenant_id for c in rows],
            revisions={c.tenant_id: c.branding_revision for c in rows})
        held = {name: quiet_hours_holds(session, name, claimed)
                for name, claimed in by_channel.items()}
    if not rows:
        return outcomes
    # one recorder for every channel: what the sends of one channel leave unrecorded counts
    # against the next channel's window, and a lone event's calls are recorded in one go
    started = claimed_at if started_at is None else min(started_at, claimed_at)
    recorder = Recorder(session_factory, token, settings,
                        deadline=min(claimed_at + settings.lease_s,
                                     started + settings.task_soft_time_limit_s) - 1.0)
    # the last moment a call may start and still be answered and recorded in the budget
    # (none when the settings leave less than one provider timeout: no cut-off then)
    room_s = min(settings.lease_s, settings.task_soft_time_limit_s) - 1.0
    last_call_at = (recorder.deadline - settings.provider_timeout_s
                    if room_s > settings.provider_timeout_s else math.inf)
    for name, (_ids, channel) in batches.items():
        before = recorder.flushes
        try:
            _send_claimed(name, channel, by_channel[name], blocked.get(name, {}), held[name], templates,
                          settings, limiter, recorder, outcomes[name], last_call_at)
        except Exception as exc:
            # the database is away (a write-back gave up), or no caller to tell: stop here
            if (on_error is None or isinstance(exc, OperationalError)
                    or not on_error(name, exc)):
                recorder.abandon()  # parked: the next claim or sweep writes it first
                raise
            # carry on: the calls it made are recorded with the next write-back
        except BaseException:
            recorder.abandon()  # a time limit or shutdown mid-batch: park what is not written
            raise
        outcomes[name].write_backs = recorder.flushes - before
    before = recorder.flushes
    try:
        recorder.flush()  # what is still queued, in one write-back
    except BaseException:
        recorder.abandon()
        raise
    outcomes[name].write_backs += recorder.flushes - before
    # undeliverable SMS go by email: the fallbacks their records created
    outcomes["sms" if "sms" in outcomes else name].fallback_email = recorder.fallback_email
    return outcomes


def _send_claimed(channel_name: str, channel: Channel, claimed: list[Any],
                  blocked: dict[int, str], held: dict[int, datetime], templates: dict[int, Any],
                  settings: Settings, limiter: RateLimiter | None, recorder: Recorder,
                  outcome: DeliverOutcome, last_call_at: float = math.inf) -> None:
    """Render and send one channel's claimed rows, recording them through ``recorder``
    (written back as the window fills and every ~100 ms; the caller writes the rest)."""
    outcome.claimed = len(claimed)
    if not claimed:
        return
    # in a backlog, transactional milestones go ahead of informational ones
    claimed.sort(key=lambda c: (c.urgency != "transactional", c.id))

    now = datetime.now(UTC)
    rows: dict[int, Row] = {}
    by_id: dict[int, Any] = {}
    candidates: list[Any] = []
    for c in claimed:
        row = rows[c.id] = Row(c.id)
        by_id[c.id] = c
        outcome.tenants[c.id] = c.slug
        outcome.event_ids[c.id] = (c.payload or {}).get("event_id")
        if c.prev_state in WAITING and is_stale(
            c.milestone, c.occurred_at, c.current_milestone, c.current_at
        ):
            row.state, row.skip = SKIPPED, "superseded"
        elif c.id in blocked:  # checked before every send; never spends an attempt
            row.state, row.skip, row.throttled = SUPPRESSED, blocked[c.id][:64], True
            if channel_name == "sms":
                recorder.fallback.append(c.id)
        elif c.id in held:  # a retry or a backlog reaching quiet hours: wait, spend nothing
            row.state, row.next_at, row.skip, row.throttled = SCHEDULED, held[c.id], QUIET_HOURS, True
        else:
            candidates.append(c)

    pause_s = paused_s(channel) if candidates else 0.0
    if pause_s > 0:  # every provider is paused by its circuit breaker: call none, spend nothing
        for c in candidates:
            wait_for_provider(rows[c.id], pause_s, f"{channel.provider} paused by its circuit "
                              "breaker", now, settings, outcome)
        candidates = []
    if limiter is not None and candidates:
        candidates = throttle(limiter, channel.provider, candidates, rows, now, settings, outcome)

    to_send, render_failures = _render_all(channel_name, candidates, rows, templates, settings)
    for row in rows.values():
        if row.state:  # settled before any call: recorded with the first write-back
            _settle(recorder, outcome, row, render_failures.get(row.id))

    window = channel.unrecorded_window()

    def room() -> int:
        if time.monotonic() >= last_call_at:
            return 0  # no new call: those in flight come back, then RECORD_NOW
        return window - recorder.unrecorded_calls

    for sent in channel.iter_send(to_send, room=room):
        if sent is RECORD_NOW:
            recorder.flush()
            if time.monotonic() >= last_call_at:
                break  # nothing in flight, and no time for another call
            continue
        _record_call(sent.message, sent.result, sent.call_ms, sent.done_at,
                     rows[sent.message.delivery_id], by_id[sent.message.delivery_id],
                     channel, channel_name, settings, now, recorder, outcome, limiter)
        if time.monotonic() - recorder.written_at >= _RECORD_EVERY_S:
            recorder.flush()
    for message in to_send:  # the budget ran out before their turn: back to the queue
        row = rows[message.delivery_id]
        if not row.state:
            row.state, row.throttled = RETRYING, True  # not called: no attempt spent
            row.next_at = datetime.now(UTC) + timedelta(seconds=_HAND_BACK_S)
            row.err = "not sent: the batch's time budget ran out before its turn"
            outcome.retry_soon.append((row.id, _HAND_BACK_S))
            _settle(recorder, outcome, row)


def _render_all(channel_name: str, candidates: list[Any], rows: dict[int, Row],
                templates: dict[int, Any], settings: Settings,
                ) -> tuple[list[OutboundMessage], dict[int, dict[str, Any]]]:
    """The messages to send; a delivery whose template fails is failed (permanent) with
    an attempt row saying why (returned by delivery id)."""
    to_send: list[OutboundMessage] = []
    failures: dict[int, dict[str, Any]] = {}
    for c in candidates:
        row = rows[c.id]
        try:
            unsub = presend.unsubscribe_token(c.slug, c.recipient) if channel_name == "email" else None
            ctx = build_context(c.payload, c.slug, c.name, settings.public_base_url,
                                unsubscribe_url=_unsubscribe_url(settings, unsub))
            # the event's region/category and the rule's variant pick the override
            # (template scope: locale, then variant, then scope specificity)
            tt = templates[c.tenant_id]
            rendered = render(channel_name, c.milestone, tt.enrich(ctx), locale=c.locale,
                              **tt.options(c.payload.get("region"),
                                           c.payload.get("product_category"), c.template),
                              sms_unicode=settings.sms_unicode)
        except TemplateRenderError as exc:
            row.state, row.err = FAILED, f"TemplateRenderError: {exc}"
            failures[row.id] = {
                "delivery_id": row.id, "attempt_no": c.attempts, "started_at": datetime.now(UTC),
                "duration_ms": 0.0, "outcome": "permanent", "provider": None,
                "provider_message_id": None, "error_class": "TemplateRenderError",
                "error_code": None, "error_message": row.err[:2000],
            }
            continue
        row.subject, row.body = rendered.subject, rendered.text
        to_send.append(OutboundMessage(
            delivery_id=c.id, channel=channel_name, recipient=c.recipient or "",
            text=rendered.text, subject=rendered.subject, html=rendered.html,
            attempt=c.attempts, tenant=c.slug,
            metadata=_metadata(c, ctx, unsub, rendered.cta_url),
        ))
    return to_send, failures


def _record_call(message: OutboundMessage, res: Any, call_ms: float, done_at: datetime,
                 row: Row, c: Any, channel: Channel, channel_name: str, settings: Settings,
                 now: datetime, recorder: Recorder, outcome: DeliverOutcome,
                 limiter: RateLimiter | None) -> None:
    """Queue one call's outcome for the next write-back."""
    if isinstance(res, ProviderPausedError):  # not called (circuit breaker): no attempt
        wait_for_provider(row, res.retry_after_s or TRIAL_WAIT_S, str(res), done_at, settings,
                          outcome)
        _settle(recorder, outcome, row)
        return
    # with failover, the provider that actually answered, not the chain's name
    provider = res.provider or channel.provider
    row.provider = provider
    attempt: dict[str, Any] = {
        "delivery_id": message.delivery_id, "attempt_no": message.attempt,
        "started_at": done_at, "duration_ms": call_ms, "provider": provider,
        "provider_message_id": None, "error_class": None, "error_code": None,
        "error_message": None,
    }
    if isinstance(res, SendResult):
        row.state, row.pmid, row.provider, row.sent_at = (SENT, res.provider_message_id,
                                                          res.provider, done_at)
        attempt.update(outcome="sent", provider_message_id=res.provider_message_id)
        outcome.sent_latencies_s.append((done_at - c.occurred_at).total_seconds())
        if limiter is not None:
            limiter.provider_answered(provider)
    else:
        budget = settings.max_attempts * (1 + (c.replays or 0))
        asked = classify(row, res, attempt, message, settings, budget, c.created_at, done_at,
                         outcome)
        if asked is not None and limiter is not None and isinstance(res, RateLimitedError):
            limiter.provider_said_slow_down(provider, asked)
        if (channel_name == "sms" and isinstance(res, PermanentError)
                and str(res.code) in presend.SMS_UNDELIVERABLE):
            recorder.fallback.append(row.id)
            if str(res.code) in presend.SMS_OPTED_OUT:
                recorder.opted_out.append((c.tenant_id, message.recipient))
    _settle(recorder, outcome, row, attempt)


def _settle(recorder: Recorder, outcome: DeliverOutcome, row: Row,
            attempt: dict[str, Any] | None = None) -> None:
    recorder.add(row, attempt)
    if attempt is not None:
        outcome.attempts.append(attempt)
    outcome.states[row.state] += 1
    outcome.results[row.id] = (row.state, row.skip or row.err)


def _unsubscribe_url(settings: Settings, token: str | None) -> str | None:
    if token is None:
        return None
    return f"{settings.public_base_url.rstrip('/')}/v1/unsubscribe/{token}"


def _metadata(c: Any, ctx: dict[str, Any], unsub: str | None, cta: str | None = None
              ) -> dict[str, Any]:
    """Ids and links only (never PII): what providers and the inbox need (``cta``: the
    call-to-action as rendered, when the tenant's links replaced the context's)."""
    meta: dict[str, Any] = {"delivery_id": c.id, "milestone": c.milestone,
                            "return_id": ctx["return_id"], "cta_url": cta or ctx["cta_url"]}
    if unsub:
        meta["unsubscribe_token"] = unsub
    return meta
