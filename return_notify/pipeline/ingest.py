"""Ingest a batch of raw events in one transaction: validate, dedupe, apply lifecycle
rules, resolve channels and create delivery rows. Returns the delivery ids to enqueue,
which the caller sends only after the commit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from return_notify.config.settings import get_settings
from return_notify.core.lifecycle import RANK, Disposition, ReturnState, decide
from return_notify.errors import EventValidationError
from return_notify.events import Milestone, ReturnEvent, parse_event
from return_notify.pipeline.rejections import record_rejected, reject_poison
from return_notify.pipeline.satisfaction import record_event_ratings
from return_notify.policy.planner import Choice, DeliveryPlanner
from return_notify.policy.preferences import RECORDED_REASONS, rule_overrides_opt_out
from return_notify.policy.throttle import is_stale
from return_notify.rules.resolver import prefetch, resolve
from return_notify.sources.tracking import remember_trackings, tracking_of
from return_notify.storage.models import (
    SCHEDULED,
    SKIPPED,
    WAITING,
    Delivery,
)
from return_notify.storage.statements import Statement
from return_notify.storage.tenants import ensure_tenant_ids

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    by_disposition: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    deliveries: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    superseded: int = 0
    #: deliveries held (quiet hours, throttle, digest) and left out by preferences
    scheduled: int = 0
    preference_skipped: int = 0
    #: delivery ids of transactional milestones: they jump the queue in a backlog
    urgent: set[int] = field(default_factory=set)
    #: (source, seconds from occurred_at to stored) of each event stored: the source's lag
    source_lags: list[tuple[str | None, float]] = field(default_factory=list)

    def absorb(self, other: IngestResult) -> None:
        """Add ``other``'s counts and deliveries (a batch ingested in parts)."""
        self.received += other.received
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.superseded += other.superseded
        self.scheduled += other.scheduled
        self.preference_skipped += other.preference_skipped
        for key, n in other.by_disposition.items():
            self.by_disposition[key] += n
        for ch, ids in other.deliveries.items():
            self.deliveries[ch].extend(ids)
        self.urgent |= other.urgent
        self.source_lags.extend(other.source_lags)

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received, "accepted": self.accepted,
            "duplicates": self.duplicates, "rejected": self.rejected,
            "superseded": self.superseded, "scheduled": self.scheduled,
            "preference_skipped": self.preference_skipped, **dict(self.by_disposition),
            "deliveries": {k: len(v) for k, v in self.deliveries.items()},
        }


def ingest_isolated(session_factory: Any, raw_events: list[Any]) -> IngestResult:
    """Ingest ``raw_events``, each transaction committed by ``session_factory``'s scope.

    One transaction for the whole batch when nothing goes wrong. When it fails for any
    reason but the database being unreachable (``OperationalError``, raised for the caller
    to retry), the batch is split in halves, recursively, so that only the events at fault
    are rejected (recorded in ``rejected_events`` with a storable copy of their payload)
    and every other event of the batch, whatever its tenant, is ingested: a mixed batch of
    many producers never loses one producer's events to another's bad one.
    """
    try:
        with session_factory() as session:
            return ingest_batch(session, raw_events)
    except OperationalError:
        raise
    except Exception as exc:  # noqa: BLE001 - isolated below: nothing is lost
        if len(raw_events) == 1:
            reject_poison(session_factory, raw_events[0], exc)
            return IngestResult(received=1, rejected=1)
        log.warning("a batch of %d events failed (%s); isolating the events at fault",
                    len(raw_events), type(exc).__name__)
    mid = len(raw_events) // 2
    result = ingest_isolated(session_factory, raw_events[:mid])
    result.absorb(ingest_isolated(session_factory, raw_events[mid:]))
    return result


# Set-based statements over arrays: one cached statement whatever the batch size, where a
# multi-row VALUES insert would be recompiled by SQLAlchemy for every new row count.
_UPSERT_RETURNS = Statement("""
INSERT INTO returns (tenant_id, return_id, customer_id, region, product_category)
SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:rids AS text[]), CAST(:cids AS text[]),
                     CAST(:regions AS text[]), CAST(:cats AS text[]))
ON CONFLICT ON CONSTRAINT uq_returns_tenant_ref DO UPDATE SET updated_at = now()
RETURNING id, tenant_id, return_id, milestone, milestone_at
""")
# Idempotency across monthly partitions (``storage/partitions.py``): ``event_keys`` holds
# one row per (tenant, event id) kept, so the check is one primary-key probe per event
# whatever the number of months, and its insert is the gate: an event is stored only when
# its key was new (a concurrent batch with the same id waits for ours, then skips it).
_EXISTING_EVENTS = Statement("""
SELECT k.tenant_id, k.event_id FROM event_keys k
JOIN unnest(CAST(:tids AS int[]), CAST(:eids AS text[])) AS v(tid, eid)
  ON k.tenant_id = v.tid AND k.event_id = v.eid
""")
_INSERT_EVENTS = Statement("""
WITH v AS (
    SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:eids AS text[]), CAST(:rpks AS bigint[]),
                         CAST(:ms AS text[]), CAST(:ats AS timestamptz[]),
                         CAST(:disps AS text[]), CAST(:reasons AS text[]),
                         CAST(:srcs AS text[]), CAST(:payloads AS text[]))
         AS v(tid, eid, rpk, m, at, disp, reason, src, payload)
), k AS (
    INSERT INTO event_keys (tenant_id, event_id)
    SELECT tid, eid FROM v ORDER BY tid, eid
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, event_id
)
INSERT INTO events (tenant_id, event_id, return_pk, milestone, occurred_at, disposition,
                    reason, source, payload)
SELECT v.tid, v.eid, v.rpk, v.m, v.at, v.disp, v.reason, v.src, CAST(v.payload AS jsonb)
FROM v JOIN k ON k.tenant_id = v.tid AND k.event_id = v.eid
RETURNING id, tenant_id, event_id
""")
# A delivery's id is in its event's month (rsn_id_like), so both live in the same monthly
# partition; the (event_pk, channel) unique index of that partition is the conflict arbiter.
_INSERT_DELIVERIES = Statement("""
INSERT INTO deliveries (id, tenant_id, event_pk, return_pk, channel, milestone, urgency,
                        recipient, locale, state, occurred_at, next_attempt_at, skip_reason,
                        template)
SELECT rsn_id_like(nextval('deliveries_id_seq'), u.epk), u.*
FROM unnest(CAST(:tids AS int[]), CAST(:epks AS bigint[]), CAST(:rpks AS bigint[]),
            CAST(:chs AS text[]), CAST(:ms AS text[]), CAST(:urg AS text[]),
            CAST(:rcpts AS text[]), CAST(:locales AS text[]), CAST(:states AS text[]),
            CAST(:ats AS timestamptz[]), CAST(:nexts AS timestamptz[]),
            CAST(:holds AS text[]), CAST(:templates AS text[]))
     AS u(tid, epk, rpk, ch, m, urg, rcpt, locale, state, at, next_at, hold, template)
ON CONFLICT DO NOTHING
RETURNING id, channel, urgency, state
""")

_tenant_cache: dict[str, int] = {}


def _tenant_ids(session: Session, slugs: set[str]) -> dict[str, int]:
    missing = sorted(slugs - _tenant_cache.keys())
    if missing:
        _tenant_cache.update(ensure_tenant_ids(session, missing))
    return {s: _tenant_cache[s] for s in slugs}


def forget_tenants() -> None:
    """Drop the per-process tenant id cache (tests that recreate the database)."""
    _tenant_cache.clear()


def _lock_returns(
    session: Session, keys: dict[tuple[int, str], ReturnEvent]
) -> dict[tuple[int, str], tuple[int, ReturnState]]:
    """Upsert and lock every return of the batch, in key order (no deadlocks between
    concurrent batches); returns each one's id and state before this batch."""
    items = sorted(keys.items())
    params = {
        "tids": [k[0] for k, _ in items], "rids": [k[1] for k, _ in items],
        "cids": [ev.customer.id for _, ev in items], "regions": [ev.region for _, ev in items],
        "cats": [ev.product_category for _, ev in items],
    }
    out = {}
    for rid_pk, tid, rid, milestone, at in _UPSERT_RETURNS.rows(session, params):
        state = ReturnState(Milestone(milestone) if milestone else None, at)
        out[(tid, rid)] = (rid_pk, state)
    return out


def ingest_batch(session: Session, raw_events: list[Any]) -> IngestResult:
    """Ingest ``raw_events`` inside ``session``'s transaction (the caller commits)."""
    result = IngestResult(received=len(raw_events))
    valid: list[ReturnEvent] = []
    seen: set[tuple[str, str]] = set()
    for raw in raw_events:
        try:
            ev = parse_event(raw)
        except EventValidationError as err:
            record_rejected(session, raw, err)
            result.rejected += 1
            continue
        key = (ev.tenant, ev.event_id)
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        valid.append(ev)
    if not valid:
        return result

    tenants = _tenant_ids(session, {ev.tenant for ev in valid})
    prefetch(session, tenants.values())  # the batch's rules: at most one query
    by_return: dict[tuple[int, str], ReturnEvent] = {}
    for ev in valid:
        by_return.setdefault((tenants[ev.tenant], ev.return_id), ev)
    returns = _lock_returns(session, by_return)
    planner = DeliveryPlanner.load(
        session, tenant_ids=set(tenants.values()),
        customers={(tenants[ev.tenant], ev.customer.id) for ev in valid},
        return_pks={pk for pk, _ in returns.values()},
    )

    existing = {(r.tenant_id, r.event_id) for r in _EXISTING_EVENTS.rows(session, {
        "tids": [tenants[ev.tenant] for ev in valid], "eids": [ev.event_id for ev in valid],
    })}

    state: dict[int, ReturnState] = {pk: st for pk, st in returns.values()}
    initial = dict(state)
    event_rows: list[dict[str, Any]] = []
    # (event, tenant, return pk, disposition, channels chosen, urgency, rule's template)
    decisions: list[tuple[ReturnEvent, int, int, Disposition, Choice | None, str,
                          str | None]] = []
    for ev in valid:
        tid = tenants[ev.tenant]
        if (tid, ev.event_id) in existing:
            result.duplicates += 1
            continue
        pk = returns[(tid, ev.return_id)][0]
        decision = decide(state[pk], ev.milestone, ev.occurred_at)
        state[pk] = decision.new_state
        disposition = decision.disposition
        choice: Choice | None = None
        urgency = "informational"
        template: str | None = None
        if decision.notify:
            rule = resolve(session, tid, ev.region, ev.product_category, ev.milestone)
            chans = rule.reachable(ev.customer.email is not None, ev.customer.phone is not None)
            urgency = rule.urgency
            template = rule.template  # the variant deliver renders with (None: default)
            choice = planner.choose(ev, tid, chans, override=rule_overrides_opt_out(rule))
            if not choice.channels:
                disposition = Disposition.NO_CHANNEL
        decisions.append((ev, tid, pk, disposition, choice, urgency, template))
        event_rows.append({
            "tid": tid, "eid": ev.event_id, "rpk": pk, "m": ev.milestone.value,
            "at": ev.occurred_at, "disp": disposition.value, "reason": decision.reason,
            "src": ev.source, "payload": ev.model_dump_json(exclude_none=True),
        })
    if not event_rows:
        return result

    inserted = _INSERT_EVENTS.rows(session, _columns(event_rows, {
        "tids": "tid", "eids": "eid", "rpks": "rpk", "ms": "m", "ats": "at", "disps": "disp",
        "reasons": "reason", "srcs": "src", "payloads": "payload"}))
    event_pk = {(tid, eid): pk for pk, tid, eid in inserted}
    result.duplicates += len(event_rows) - len(inserted)
    result.accepted = len(inserted)
    stored_at = datetime.now(UTC)
    result.source_lags = [(ev.source, (stored_at - ev.occurred_at).total_seconds())
                          for ev, tid, *_ in decisions if (tid, ev.event_id) in event_pk]
    # the tracking numbers of labels, so carrier webhooks find their return
    trackings = [(tid, rpk, *found) for ev, tid, rpk, *_ in decisions
                 if (tid, ev.event_id) in event_pk and (found := tracking_of(ev)) is not None]
    if trackings:
        remember_trackings(session, trackings)
    # a retailer's own survey result on the completion event (data.satisfaction: the v1
    # contract's free-form data, so no schema change)
    scores = [(tid, rpk, ev.data["satisfaction"], ev.event_id)
              for ev, tid, rpk, *_ in decisions
              if ev.milestone == Milestone.RETURN_COMPLETED and "satisfaction" in ev.data
              and (tid, ev.event_id) in event_pk]
    if scores:
        record_event_ratings(session, scores, get_settings().rating_change_window_h)

    delivery_rows: list[dict[str, Any]] = []
    for ev, tid, rpk, disposition, choice, urgency, template in decisions:
        epk = event_pk.get((tid, ev.event_id))
        if epk is None:
            continue  # lost a race with a concurrent duplicate: that one notifies
        if choice is not None:
            recorded = [(ch, r) for ch, r in choice.skipped if r in RECORDED_REASONS]
            for ch, reason in [*((c, None) for c in choice.channels), *recorded]:
                recipient = {"email": ev.customer.email, "sms": ev.customer.phone}.get(
                    ch, ev.customer.id
                )
                if reason is None:  # to send: now, or held until p.at (p.reason says why)
                    p = planner.plan(ev, tid, rpk, ch, choice)
                    d_state, next_at, hold = p.state, p.at, p.reason
                else:  # left out by the customer's preferences: recorded, never sent
                    d_state, next_at, hold = SKIPPED, None, reason
                delivery_rows.append({
                    "tid": tid, "epk": epk, "rpk": rpk, "ch": ch, "m": ev.milestone.value,
                    "urg": urgency, "rcpt": recipient,
                    "locale": choice.locale or ev.customer.locale, "state": d_state,
                    "at": ev.occurred_at, "next": next_at, "hold": hold,
                    "template": template,
                })
        result.by_disposition[disposition.value] += 1

    if delivery_rows:
        for did, ch, urgency, d_state in _INSERT_DELIVERIES.rows(session, _columns(
                delivery_rows, {
                    "tids": "tid", "epks": "epk", "rpks": "rpk", "chs": "ch", "ms": "m",
                    "urg": "urg", "rcpts": "rcpt", "locales": "locale", "states": "state",
                    "ats": "at", "nexts": "next", "holds": "hold",
                    "templates": "template"})):
            if d_state == SCHEDULED:  # the sweeper enqueues it when due
                result.scheduled += 1
                continue
            if d_state == SKIPPED:
                result.preference_skipped += 1
                continue
            result.deliveries[ch].append(did)
            if urgency == "transactional":
                result.urgent.add(did)

    changed = {pk: st for pk, st in state.items() if st != initial[pk]}
    if changed:
        result.superseded = _skip_superseded(session, changed)
        _UPDATE_RETURNS.run(
            session,
            {
                "ids": list(changed),
                "ms": [st.milestone.value if st.milestone else None for st in changed.values()],
                "rks": [RANK[st.milestone] if st.milestone else 0 for st in changed.values()],
                "ats": [st.occurred_at for st in changed.values()],
            },
        )
    return result


_UPDATE_RETURNS = Statement("""
UPDATE returns r SET milestone = v.m, milestone_rank = v.rk, milestone_at = v.at,
                     updated_at = now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:ms AS text[]), CAST(:rks AS smallint[]),
            CAST(:ats AS timestamptz[])) AS v(id, m, rk, at)
WHERE r.id = v.id
""")


def _columns(rows: list[dict[str, Any]], names: dict[str, str]) -> dict[str, list[Any]]:
    """Rows to one array per column, for the ``unnest`` statements."""
    return {param: [r[key] for r in rows] for param, key in names.items()}


# a text statement over arrays: the ORM form (an expanding IN per batch size) cost more
# CPU to build than PostgreSQL spent running it, on every batch
_WAITING_OF_RETURNS = Statement("""
SELECT id, return_pk, milestone, occurred_at FROM deliveries
WHERE return_pk = ANY(CAST(:rpks AS bigint[])) AND state = ANY(CAST(:states AS text[]))
FOR UPDATE SKIP LOCKED
""")


def _skip_superseded(session: Session, changed: dict[int, ReturnState]) -> int:
    """Skip waiting (retrying/scheduled) deliveries that a newer milestone made stale."""
    rows = _WAITING_OF_RETURNS.rows(session, {"rpks": list(changed),
                                              "states": list(WAITING)})
    # is_stale, not supersedes: the waiting delivery about the new state itself (a held
    # in_transit, the newest of a digest group) is current, not superseded by itself
    stale_ids = [
        did for did, rpk, m, at in rows
        if is_stale(m, at, changed[rpk].milestone, changed[rpk].occurred_at)
    ]
    if stale_ids:
        session.execute(
            update(Delivery).where(Delivery.id.in_(stale_ids), Delivery.state.in_(WAITING))
            .values(state=SKIPPED, skip_reason="superseded", next_attempt_at=None,
                    updated_at=text("now()"))
        )
    return len(stale_ids)

