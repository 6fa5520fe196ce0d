"""Provider feedback → delivery state (forward-only), the suppression list and engagement.

Plain functions on a ``Session`` (no FastAPI), called by the webhook routes after the
signature has been checked. Forward-only: only a delivery that is ``sending`` or ``sent``
moves, to ``delivered`` or ``failed``; a late or replayed callback never moves one back.
A bounce is ``failed`` with ``last_error`` starting ``bounced:`` (no extra state).
SendGrid ``open`` and ``click`` events change no state: each is an engagement signal of its
delivery, recorded once and only with consent (``engagement.record_signals``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from return_notify.core.masking import mask
from return_notify.pipeline.engagement import SENDGRID, Signal, record_signals
from return_notify.policy.suppression import SuppressionRow, lift, suppress_many
from return_notify.storage.models import (
    DELIVERED,
    FAILED,
    HARD_BOUNCE,
    SENDING,
    SENT,
    SPAM_REPORT,
    STOP,
    UNSUBSCRIBE,
)
from return_notify.storage.tenants import find_tenant_ids

log = logging.getLogger(__name__)

MOVABLE = (SENDING, SENT)

TWILIO_STATUS = {"delivered": DELIVERED, "read": DELIVERED, "undelivered": FAILED,
                 "failed": FAILED}
#: Twilio error codes that mean "this number opted out of this sender".
TWILIO_OPTED_OUT = {"21610"}
#: SendGrid drops a message when the address is on its own list; mirror that list.
SENDGRID_RELEVANT = {"delivered", "bounce", "dropped", "spamreport", "unsubscribe",
                     "group_unsubscribe", "group_resubscribe"}
#: engagement events: recorded as signals (with consent), never a state change
SENDGRID_ENGAGEMENT = {"open", "click"}
SENDGRID_DROP_REASONS = {"bounced address": HARD_BOUNCE, "spam reporting address": SPAM_REPORT,
                         "unsubscribed address": UNSUBSCRIBE}


@dataclass
class _Change:
    id: int
    state: str
    delivered_at: datetime | None = None
    error: str | None = None


@dataclass
class FeedbackResult:
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    unmatched: int = 0
    suppressed: int = 0
    lifted: int = 0
    ignored: int = 0
    #: opens and clicks recorded (first per notification, with consent)
    engagement: int = 0
    changes: list[_Change] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {"received": self.received, "applied": self.applied,
                "duplicates": self.duplicates, "unmatched": self.unmatched,
                "suppressed": self.suppressed, "lifted": self.lifted, "ignored": self.ignored,
                "engagement": self.engagement}


_LOCK = text("""
SELECT id, tenant_id, state, recipient, provider, provider_message_id, return_pk, milestone
FROM deliveries
WHERE (id = ANY(CAST(:ids AS bigint[])) AND channel = :channel)
   OR (provider = :provider AND provider_message_id = ANY(CAST(:pmids AS text[])))
ORDER BY id
FOR UPDATE
""")

_APPLY = text("""
UPDATE deliveries d
SET state = v.state, delivered_at = coalesce(v.delivered_at, d.delivered_at),
    last_error = coalesce(v.err, d.last_error), updated_at = now()
FROM unnest(CAST(:ids AS bigint[]), CAST(:states AS text[]),
            CAST(:ats AS timestamptz[]), CAST(:errs AS text[])) AS v(id, state, delivered_at, err)
WHERE d.id = v.id AND d.state IN ('sending', 'sent')
""")


def _lock_deliveries(session: Session, channel: str, provider: str, ids: Iterable[int],
                     pmids: Iterable[str]) -> list[Any]:
    ids, pmids = sorted(set(ids)), sorted(set(pmids))
    if not ids and not pmids:
        return []
    return list(session.execute(_LOCK, {"ids": ids, "pmids": pmids, "channel": channel,
                                        "provider": provider}))


def _move(states: dict[int, str], result: FeedbackResult, delivery_id: int, new: str,
          at: datetime | None = None, error: str | None = None) -> bool:
    if states.get(delivery_id) not in MOVABLE:
        result.ignored += 1
        return False
    states[delivery_id] = new
    result.changes.append(_Change(delivery_id, new, at if new == DELIVERED else None, error))
    result.applied += 1
    return True


def _write(session: Session, result: FeedbackResult) -> None:
    final: dict[int, _Change] = {}
    for c in result.changes:  # a delivery moves at most once (MOVABLE → terminal)
        final[c.id] = c
    if final:
        vals = list(final.values())
        session.execute(_APPLY, {"ids": [v.id for v in vals], "states": [v.state for v in vals],
                                 "ats": [v.delivered_at for v in vals],
                                 "errs": [v.error for v in vals]})


# ------------------------------------------------------------------ Twilio ---------------

_FIRST_TIME = text(
    "INSERT INTO webhook_events (provider, provider_event_id) VALUES (:p, :id) "
    "ON CONFLICT ON CONSTRAINT uq_webhook_events_provider_id DO NOTHING RETURNING id")


def first_time(session: Session, provider: str, event_id: str) -> bool:
    """Record a provider's event id; False when it was seen before (a replay or a retry):
    the caller then changes nothing. Committed with the caller's transaction, so a change
    that fails is not remembered as done."""
    return session.execute(_FIRST_TIME, {"p": provider[:16], "id": event_id[:128]}
                           ).first() is not None


def apply_twilio_status(session: Session, params: dict[str, str],
                        delivery_id: int | None = None) -> FeedbackResult:
    """A Twilio status callback (``MessageSid``, ``MessageStatus``, ``ErrorCode``)."""
    result = FeedbackResult(received=1)
    sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "").lower()
    new = TWILIO_STATUS.get(status)
    if new is None:  # queued / sending / sent / accepted: the deliver task records "sent"
        result.ignored += 1
        return result
    rows = _lock_deliveries(session, "sms", "twilio",
                            [delivery_id] if delivery_id else [], [sid] if sid else [])
    if delivery_id:
        rows = [r for r in rows if r.id == delivery_id] or rows
    if not rows:
        result.unmatched += 1
        log.info("twilio status %s for unknown message %s", status, sid)
        return result
    row = rows[0]
    code = params.get("ErrorCode") or ""
    error = f"twilio {status}" + (f" (error {code})" if code else "") if new == FAILED else None
    _move({row.id: row.state}, result, row.id, new, datetime.now(UTC), error)
    if code in TWILIO_OPTED_OUT and row.recipient:
        result.suppressed += suppress_many(session, [SuppressionRow(
            row.tenant_id, "sms", row.recipient, STOP,
            sender=params.get("MessagingServiceSid") or params.get("From"), source="twilio")])
    _write(session, result)
    return result


# ------------------------------------------------------------------ SendGrid -------------

def _pmid(event: dict[str, Any]) -> str | None:
    sg = event.get("sg_message_id")
    return sg.split(".", 1)[0] if isinstance(sg, str) and sg else None


def _delivery_id(event: dict[str, Any]) -> int | None:
    raw = event.get("delivery_id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw if 0 < raw < 2**63 else None
    if isinstance(raw, str) and raw.isdigit() and len(raw) < 19:
        return int(raw)
    return None


def _at(event: dict[str, Any]) -> datetime:
    ts = event.get("timestamp")
    if isinstance(ts, (int, float)) and not isinstance(ts, bool) and 0 < ts < 32503680000:
        return datetime.fromtimestamp(ts, UTC)
    return datetime.now(UTC)


def _dedupe(session: Session, events: Sequence[dict[str, Any]], result: FeedbackResult
            ) -> list[dict[str, Any]]:
    ids = [e["sg_event_id"] for e in events if isinstance(e.get("sg_event_id"), str)
           and 0 < len(e["sg_event_id"]) <= 128]
    fresh: set[str] = set()
    if ids:
        fresh = set(session.execute(text(
            "INSERT INTO webhook_events (provider, provider_event_id) "
            "SELECT 'sendgrid', unnest(CAST(:ids AS text[])) "
            "ON CONFLICT ON CONSTRAINT uq_webhook_events_provider_id DO NOTHING "
            "RETURNING provider_event_id"), {"ids": ids}).scalars())
    out = []
    for e in events:
        eid = e.get("sg_event_id")
        if isinstance(eid, str) and 0 < len(eid) <= 128:
            if eid not in fresh:
                result.duplicates += 1
                continue
            fresh.discard(eid)  # a repeat inside the same batch is a duplicate too
        out.append(e)
    return out


def apply_sendgrid_events(session: Session, events: Sequence[Any]) -> FeedbackResult:
    """A batch of SendGrid Event Webhook events: dedupe, move deliveries, suppress."""
    result = FeedbackResult(received=len(events))
    valid = [e for e in events if isinstance(e, dict) and isinstance(e.get("event"), str)]
    result.ignored += len(events) - len(valid)
    fresh = sorted(_dedupe(session, valid, result), key=lambda e: _at(e).timestamp())
    rows = _lock_deliveries(session, "email", "sendgrid",
                            [i for e in fresh if (i := _delivery_id(e))],
                            [p for e in fresh if (p := _pmid(e))])
    by_id = {r.id: r for r in rows}
    by_pmid = {r.provider_message_id: r for r in rows if r.provider == "sendgrid"}
    states = {r.id: r.state for r in rows}
    slugs = {e["tenant"] for e in fresh if isinstance(e.get("tenant"), str)}
    tenant_ids = find_tenant_ids(session, slugs)
    suppressions: list[SuppressionRow] = []
    signals: list[Signal] = []
    for e in fresh:
        kind = e["event"].lower()
        if kind not in SENDGRID_RELEVANT | SENDGRID_ENGAGEMENT:  # processed, deferred, ...
            result.ignored += 1
            continue
        did = _delivery_id(e)
        row = (by_id.get(did) if did else None) or by_pmid.get(_pmid(e) or "")
        if kind in SENDGRID_ENGAGEMENT:
            if row is None:
                result.ignored += 1
            else:
                signals.append(Signal(row.tenant_id, row.return_pk, row.milestone, "email", kind,
                                      _at(e), SENDGRID, row.id))
            continue
        tenant_key = e.get("tenant")
        tenant_id = (row.tenant_id if row is not None
                     else tenant_ids.get(tenant_key) if isinstance(tenant_key, str) else None)
        if row is None and tenant_id is None:
            result.unmatched += 1
            continue
        email = e.get("email") if isinstance(e.get("email"), str) else None
        if row is not None and kind == "delivered":
            _move(states, result, row.id, DELIVERED, _at(e))
        elif row is not None and kind in ("bounce", "dropped"):
            label = "dropped" if kind == "dropped" else \
                "blocked" if e.get("type") == "blocked" else "bounced"
            detail = str(e.get("reason") or e.get("response") or "")[:300]
            _move(states, result, row.id, FAILED, error=f"{label}: {detail}".strip())
        if kind == "group_resubscribe" and email and tenant_id:
            result.lifted += lift(session, tenant_id, "email", email, reasons=(UNSUBSCRIBE,))
        reason = _suppression_reason(kind, e)
        if reason and email and tenant_id:
            suppressions.append(SuppressionRow(tenant_id, "email", email, reason,
                                               source="sendgrid"))
            log.info("sendgrid %s: suppressing %s (%s)", kind, mask(email), reason)
    result.suppressed += suppress_many(session, suppressions)
    if signals:
        result.engagement = record_signals(session, signals)
        result.ignored += len(signals) - result.engagement  # no consent, or not the first
    _write(session, result)
    return result


def _suppression_reason(kind: str, event: dict[str, Any]) -> str | None:
    if kind == "bounce":
        return None if event.get("type") == "blocked" else HARD_BOUNCE
    if kind == "dropped":
        return SENDGRID_DROP_REASONS.get(str(event.get("reason", "")).strip().lower())
    if kind == "spamreport":
        return SPAM_REPORT
    if kind in ("unsubscribe", "group_unsubscribe"):
        return UNSUBSCRIBE
    return None
